"""Find a kernel header tree for BCC, generating one from BTF when the kernel ships none.

Order of preference: the running kernel's own headers, the kernel's built-in
/sys/kernel/kheaders.tar.xz (BCC unpacks it itself), and last a tree generated from
/sys/kernel/btf/vmlinux. The generated tree is cached under a key that changes with the
kernel's BTF, the kernel release and the BCC version, so only the first start pays for it.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import KernelUnsupported
from tracer.kernel import bpf_source, btf_trim

# Bump when the generated tree's layout changes, so old caches are not reused.
GENERATOR_VERSION = 5  # 5: explicit padding (explicit_padding)
# -D flag that makes the tree use the whole BTF dump instead of the trimmed one.
FULL_BTF_FLAG = "-DOOMTRACE_FULL_BTF"
BTF_PATH = Path("/sys/kernel/btf/vmlinux")
KHEADERS_PATH = Path("/sys/kernel/kheaders.tar.xz")
RENAME_PREFIX = "__btf_"

# Headers BCC's own helpers include; in a BTF tree the dump already defines their contents.
_BCC_HELPER_INCLUDES = (
    "uapi/linux/ptrace.h",
    "uapi/linux/bpf.h",
    "linux/bpf_common.h",
    "uapi/linux/if_packet.h",
    "linux/version.h",
    "linux/log2.h",
    "linux/bpf.h",
    "linux/sched.h",
    "linux/ptrace.h",
    "asm/ptrace.h",
)
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s*<([^>]+)>', re.MULTILINE)
_TAG_RE = re.compile(r"\b(?:struct|union|enum)\s+(\w+)\s*\{")
_ENUM_RE = re.compile(r"\benum\s+(\w*)\s*\{(.*?)\}", re.DOTALL)
_ENUMERATOR_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:=|$)")
_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


@dataclass(frozen=True)
class HeaderSource:
    """Where BCC gets its kernel headers from."""

    kind: str  # "kernel-headers", "kheaders" or "btf"
    path: str  # the tree (or archive) used
    generated: bool = False  # True when this start generated the BTF tree
    seconds: float = 0.0  # time spent generating it

    def environ(self) -> dict[str, str]:
        """Environment BCC needs to use this source."""
        return {"BCC_KERNEL_SOURCE": self.path} if self.kind == "btf" else {}


def choose(
    cache_dir: Path,
    release: str | None = None,
    modules_root: Path = Path("/lib/modules"),
    kheaders: Path = KHEADERS_PATH,
    btf: Path = BTF_PATH,
) -> HeaderSource:
    """Pick the best header source for the running kernel, generating a BTF tree if needed."""
    release = release or platform.release()
    build = modules_root / release / "build"
    if _kernel_headers(build, modules_root / release / "source"):
        return HeaderSource("kernel-headers", str(build))
    if not kheaders.exists():
        _try_modprobe("kheaders")
    if kheaders.exists():
        return HeaderSource("kheaders", str(kheaders))
    if btf.is_file():
        return ensure_btf_tree(cache_dir, release, btf)
    raise KernelUnsupported(
        f"no kernel headers for {release}: install the package with this kernel's headers "
        f"(Debian/Ubuntu: apt install linux-headers-{release}), or run a kernel built with "
        "CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux) or CONFIG_IKHEADERS"
    )


def kernel_headers_present(release_dir: Path) -> bool:
    """Whether /lib/modules/RELEASE (RELEASE_DIR) holds a header tree BCC can use."""
    return _kernel_headers(release_dir / "build", release_dir / "source")


def _kernel_headers(build: Path, source: Path) -> bool:
    """A header tree for this kernel: whole in build/, or split as Debian ships it (generated
    files in build/, the rest in source/ = linux-headers-R-common), which BCC reads both of."""
    if (build / "include" / "linux" / "kconfig.h").is_file():
        return True
    return (build / "include" / "generated" / "autoconf.h").is_file() and (
        source / "include" / "linux" / "kconfig.h").is_file()


def _try_modprobe(module: str) -> None:
    try:
        subprocess.run(["modprobe", module], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


# --- the BTF tree ---------------------------------------------------------------------


def cache_key(btf: Path, release: str, bcc_version: str) -> str:
    """A key that changes whenever the kernel, its BTF, BCC or any BPF source file changes."""
    h = hashlib.sha256()
    with open(btf, "rb") as f:
        h.update(f.read())
    h.update(f"\0{release}\0{bcc_version}\0{GENERATOR_VERSION}".encode())
    for path in bpf_source.source_files():  # the trimmed dump serves these programs only
        h.update(f"\0{path.name}\0".encode() + path.read_bytes())
    return h.hexdigest()[:20]


def _program_sources() -> list[str]:
    """The text of every BPF source file: the program, all its parts and the event header."""
    return [p.read_text() for p in bpf_source.source_files()]


def btf_tree_path(cache_dir: Path, release: str, btf: Path = BTF_PATH) -> Path:
    """Where this kernel's generated tree is (or will be) cached."""
    return cache_dir / "headers" / cache_key(btf, release, _bcc_version())


def ensure_btf_tree(cache_dir: Path, release: str, btf: Path = BTF_PATH) -> HeaderSource:
    """Return the cached BTF header tree for this kernel, generating it on first use."""
    tree = btf_tree_path(cache_dir, release, btf)
    if (tree / "include" / "linux" / "types.h").is_file():
        return HeaderSource("btf", str(tree))
    uapi = bcc_uapi_bpf_header()
    key = tree.name
    start = time.monotonic()
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=tree.parent))
    try:
        dump = explicit_padding(dump_btf_c(btf))
        roots = btf_trim.roots_of(_program_sources()) | btf_trim.identifiers(uapi) | {"struct pt_regs"}
        write_btf_tree(tmp, dump, uapi, read_kconfig(), release, extra_stubs(), btf_trim.trim(dump, roots))
        try:
            os.rename(tmp, tree)
        except OSError:  # a concurrent start finished first: use its tree
            if not (tree / "include" / "linux" / "types.h").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return HeaderSource("btf", str(tree), generated=True, seconds=time.monotonic() - start)


def dump_btf_c(btf: Path) -> str:
    """The kernel's BTF as C declarations (bpftool)."""
    bpftool = shutil.which("bpftool") or _first_existing(["/usr/sbin/bpftool", "/sbin/bpftool"])
    if not bpftool:
        raise KernelUnsupported(
            "this kernel has no headers, and generating them from BTF needs bpftool "
            "(Debian/Ubuntu: apt install bpftool)"
        )
    out = subprocess.run(
        [bpftool, "btf", "dump", "file", str(btf), "format", "c"],
        capture_output=True, check=False,
    )
    if out.returncode != 0:
        raise KernelUnsupported(f"bpftool could not dump {btf}: {out.stderr.decode().strip()}")
    return out.stdout.decode()


_LONG_PAD = re.compile(r"^(\s*)long: 64;$", re.MULTILINE)


def explicit_padding(btf_c: str) -> str:
    """The dump with bpftool's padding bit-fields (`long: 64;`, put before a member that the
    kernel aligns more than its type) as named char arrays of the same size.

    BCC's rewriter, which turns `&task->pid` into an address, lays those bit-fields out
    differently from the compile that makes the program: on Debian 11's 5.10 every member of
    task_struct after `se` came out 16 bytes late there (sched_entity pads before `avg`), so the
    program read the wrong field. A char array lays out the same in both.
    """
    n = itertools.count()
    return _LONG_PAD.sub(lambda m: f"{m.group(1)}char __oomtrace_pad{next(n)}[8];", btf_c)


def _first_existing(paths: Iterable[str]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def _bcc_version() -> str:
    try:
        import bcc

        return str(getattr(bcc, "__version__", "unknown"))
    except ImportError:
        return "none"


def bcc_uapi_bpf_header() -> str:
    """The text of the uapi bpf.h that BCC compiles into every program.

    BCC embeds it in libbcc; every type and enumerator it defines clashes with the BTF dump,
    so the tree has to rename exactly those.
    """
    for lib in _libbcc_candidates():
        try:
            data = Path(lib).read_bytes()
        except OSError:
            continue
        text = embedded_uapi_bpf_header(data)
        if text is not None:
            return text
    # Not embedded (or libbcc not found): the distribution's uapi header is the next best guess.
    fallback = Path("/usr/include/linux/bpf.h")
    if fallback.is_file():
        return fallback.read_text()
    raise KernelUnsupported("cannot find BCC's uapi bpf.h (is python3-bpfcc installed?)")


def embedded_uapi_bpf_header(lib: bytes) -> str | None:
    """The uapi bpf.h embedded in libbcc's bytes LIB: a C string from its include guard to its
    NUL (its closing comment changed: `_UAPI__LINUX_BPF_H__` up to BCC 0.3x, `__LINUX_BPF_H__` in 0.37)."""
    s = lib.find(b"#ifndef _UAPI__LINUX_BPF_H__")
    e = lib.find(b"\0", s)
    if s < 0 or e < 0 or b"#endif" not in lib[s:e]:
        return None
    return lib[s:e].decode("utf-8", "replace")


def _libbcc_candidates() -> list[str]:
    found = []
    try:
        from bcc import libbcc

        found.append(libbcc.lib._name)
    except (ImportError, AttributeError):
        pass
    found += [str(p) for p in sorted(Path("/usr/lib").glob("*/libbcc.so*"))]
    found += [str(p) for p in sorted(Path("/usr/lib").glob("libbcc.so*"))]
    return found


def read_kconfig() -> dict[str, str]:
    """The running kernel's config (CONFIG_X -> value), from /proc/config.gz or /boot."""
    for path in (Path("/proc/config.gz"), Path("/boot") / f"config-{platform.release()}"):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()
        return parse_kconfig(text)
    return {"CONFIG_BPF_SYSCALL": "y"}


def parse_kconfig(text: str) -> dict[str, str]:
    config = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("CONFIG_"):
            config[name] = value
    return config


def extra_stubs() -> list[str]:
    """Every <header> the shipped BPF programs include: the BTF tree stubs them out."""
    names = set(_BCC_HELPER_INCLUDES)
    for text in _program_sources():
        names.update(_INCLUDE_RE.findall(text))
    return sorted(names)


def clashing_names(btf_c: str, uapi: str) -> list[str]:
    """Names that both the BTF dump and BCC's uapi bpf.h define: tags and enumerators.

    An enum whose tag clashes has all its BTF enumerators renamed too, because uapi headers
    build some enums through macros (enum bpf_func_id) that a regex cannot read.
    """
    uapi = _COMMENT_RE.sub("", uapi)
    uapi_tags = set(_TAG_RE.findall(uapi))
    uapi_enumerators = {n for _, body in _ENUM_RE.findall(uapi) for n in _enumerators(body)}
    btf_tags = set(_TAG_RE.findall(btf_c))
    names = uapi_tags & btf_tags
    for tag, body in _ENUM_RE.findall(btf_c):
        enumerators = _enumerators(body)
        if tag in uapi_tags:
            names |= enumerators
        else:
            names |= enumerators & uapi_enumerators
    return sorted(names)


def _enumerators(body: str) -> set[str]:
    """The names an enum body declares (values may hold commas only inside parentheses)."""
    names, depth, item = set(), 0, []
    for ch in body + ",":
        if ch == "," and depth == 0:
            m = _ENUMERATOR_RE.match("".join(item))
            if m:
                names.add(m.group(1))
            item = []
            continue
        depth += (ch == "(") - (ch == ")")
        item.append(ch)
    return names


def linux_version_code(release: str) -> int:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise KernelUnsupported(f"cannot read a kernel version from {release!r}")
    major, minor, patch = (int(x or 0) for x in m.groups())
    return (major << 16) + (minor << 8) + min(patch, 255)


# uname's machine -> the kernel's arch/ directory, as BCC maps it when it adds
# -I$BCC_KERNEL_SOURCE/arch/<dir>/include (BCC reads $ARCH first, as kbuild does).
_ARCH_DIRS = (
    (("x86_64", "i386", "i486", "i586", "i686"), "x86"),
    (("aarch64", "arm64"), "arm64"),
    (("ppc64", "ppc64le", "ppc"), "powerpc"),
    (("s390x", "s390"), "s390"),
    (("riscv64", "riscv32"), "riscv"),
    (("loongarch64",), "loongarch"),
    (("mips", "mips64", "mipsel", "mips64el"), "mips"),
)


def kernel_arch(machine: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The kernel's name for this machine's architecture (its arch/ directory): $ARCH if set,
    else uname's machine mapped (x86_64 -> x86, aarch64 -> arm64, armv7l -> arm, ...)."""
    env = os.environ if environ is None else environ
    if env.get("ARCH"):
        return env["ARCH"]
    machine = machine or platform.machine()
    for names, arch in _ARCH_DIRS:
        if machine in names:
            return arch
    if machine.startswith("arm"):
        return "arm"
    return machine


def write_btf_tree(
    root: Path, btf_c: str, uapi: str, kconfig: dict[str, str], release: str, stubs: list[str],
    trimmed: str | None = None, arch: str | None = None,
) -> None:
    """Write a header tree that BCC accepts as BCC_KERNEL_SOURCE.

    It holds the whole dump and, when given, a TRIMMED one that is used unless the compile
    defines OOMTRACE_FULL_BTF. ARCH is the kernel's arch/ directory (default: this machine's).
    """
    inc = root / "include"
    names = clashing_names(btf_c, uapi)
    _write(inc / "oomtrace_vmlinux_full.h", btf_c)
    _write(inc / "oomtrace_vmlinux.h", btf_c if trimmed is None else trimmed)
    for stub in stubs:
        _write(inc / stub, "/* generated by oomtrace: the BTF dump in linux/types.h defines it */\n")
    _write(inc / "linux" / "types.h", _types_h(names))
    _write(inc / "linux" / "kconfig.h", _kconfig_h(kconfig))
    _write(inc / "linux" / "version.h", _version_h(release))
    page = _page_h(os.sysconf("SC_PAGE_SIZE"))
    _write(root / "arch" / (arch or kernel_arch()) / "include" / "asm" / "page.h", page)
    _write(inc / "asm" / "page.h", page)
    _write(root / "NAMES", "\n".join(names) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _types_h(names: list[str]) -> str:
    renames = "".join(f"#define {n} {RENAME_PREFIX}{n}\n" for n in names)
    undefs = "".join(f"#undef {n}\n" for n in names)
    return (
        "/* generated by oomtrace from the kernel's BTF; BCC compiles its own uapi bpf.h, so\n"
        " * every name both define is renamed on the BTF side. */\n"
        "#ifndef __OOMTRACE_BTF_TYPES_H\n#define __OOMTRACE_BTF_TYPES_H\n"
        "#define BPF_NO_PRESERVE_ACCESS_INDEX\n"
        f"{renames}#ifdef OOMTRACE_FULL_BTF\n#include <oomtrace_vmlinux_full.h>\n#else\n"
        f"#include <oomtrace_vmlinux.h>\n#endif\n{undefs}"
        "#ifndef __aligned_u64\n#define __aligned_u64 __u64 __attribute__((aligned(8)))\n#endif\n"
        "#ifndef NULL\n#define NULL ((void *)0)\n#endif\n"
        "#ifndef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n#endif\n"
        "#endif\n"
    )


def _kconfig_h(kconfig: dict[str, str]) -> str:
    lines = ["/* generated by oomtrace from the running kernel's config */",
             "#ifndef __OOMTRACE_KCONFIG_H", "#define __OOMTRACE_KCONFIG_H"]
    for name, value in sorted(kconfig.items()):
        if value == "y":
            lines.append(f"#define {name} 1")
        elif value == "m":
            lines.append(f"#define {name}_MODULE 1")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def _version_h(release: str) -> str:
    return (
        f"#define LINUX_VERSION_CODE {linux_version_code(release)}\n"
        "#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))\n"
    )


def _page_h(page_size: int) -> str:
    shift = page_size.bit_length() - 1
    return (
        "#ifndef __OOMTRACE_PAGE_H\n#define __OOMTRACE_PAGE_H\n"
        f"#define PAGE_SHIFT {shift}\n#define PAGE_SIZE (1UL << PAGE_SHIFT)\n"
        "#define PAGE_MASK (~(PAGE_SIZE - 1))\n#endif\n"
    )
