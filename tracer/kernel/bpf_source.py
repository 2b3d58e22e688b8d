"""The shipped BPF sources, and the event layouts derived from their shared header.

bpf/oomtrace.bpf.c is the program; each feature is a part of it, bpf/*.bpf.h, which
program_text() pastes in where the program #includes it. bpf/oomtrace.h is the one definition
of every event; this module parses it into ctypes structures and integer constants, so
nothing is mirrored by hand.
"""

from __future__ import annotations

import ctypes
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

HEADER = "oomtrace.h"
PROGRAM = "oomtrace.bpf.c"
# Defined only in program_text()'s output: a part compiled any other way stops with an #error.
PROGRAM_TEXT_MACRO = "OOMTRACE_PROGRAM_TEXT"

_CTYPES = {
    "__u8": ctypes.c_uint8, "__u16": ctypes.c_uint16, "__u32": ctypes.c_uint32,
    "__u64": ctypes.c_uint64, "__s8": ctypes.c_int8, "__s16": ctypes.c_int16,
    "__s32": ctypes.c_int32, "__s64": ctypes.c_int64, "char": ctypes.c_char,
}
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(-?\d+)\s*$", re.MULTILINE)
_ENUM = re.compile(r"\benum\s+\w*\s*\{(.*?)\}\s*;", re.DOTALL)
_ENUMERATOR = re.compile(r"(\w+)\s*=\s*(-?\d+)")
_STRUCT = re.compile(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", re.DOTALL)
_MEMBER = re.compile(r"^\s*(\w+)\s+(\w+)\s*(?:\[\s*(\w+)\s*\])?\s*;\s*$")
_PART_INCLUDE = re.compile(r'^\s*#\s*include\s+"([\w.-]+\.bpf\.h)"')


def bpf_dir() -> Path:
    """The BPF sources: the installed tracer.bpf package, or bpf/ beside tracer/ in a checkout
    run in place (as the VM suite does)."""
    try:
        return Path(str(resources.files("tracer.bpf")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "bpf"


def source_files() -> list[Path]:
    """Every BPF source shipped: the program, its parts and the event header. Whatever is
    derived from the sources (the trimmed BTF header tree and its cache key) reads these."""
    return sorted(bpf_dir().glob("*.[ch]"))


def program_text(program: Path | None = None) -> str:
    """The program as BCC compiles it: PROGRAM with each #include "*.bpf.h" replaced by that part.

    BCC finds programs, rewrites map calls and writes TRACEPOINT_PROBE's argument struct only
    in the text it compiles, never in an #included file, so the parts must be pasted in. #line
    markers keep compiler messages pointing at the part's own file and line. Other includes
    (oomtrace.h: types and constants only) stay real includes, found through -I bpf/.
    """
    out = [f"#define {PROGRAM_TEXT_MACRO} 1"]
    _paste(program or bpf_dir() / PROGRAM, out, ())
    return "\n".join(out) + "\n"


def _paste(path: Path, out: list[str], outer: tuple[Path, ...]) -> None:
    outer += (path,)
    out.append(f'#line 1 "{path}"')
    for number, line in enumerate(path.read_text().splitlines(), 1):
        m = _PART_INCLUDE.match(line)
        if m is None:
            out.append(line)
            continue
        part = path.parent / m.group(1)
        if part in outer:
            raise ValueError("BPF parts include each other: " + " -> ".join(p.name for p in outer + (part,)))
        _paste(part, out, outer)
        out.append(f'#line {number + 1} "{path}"')


@dataclass(frozen=True)
class Layout:
    """What bpf/oomtrace.h defines: integer constants and event structures."""

    constants: dict[str, int]
    structs: dict[str, type[ctypes.Structure]]
    byteorder: str = sys.byteorder  # of the structures: the running kernel's (user space shares its CPU)

    def names(self, prefix: str) -> dict[int, str]:
        """Value -> lower-case name for the constants named PREFIX_*."""
        return {v: k[len(prefix):].lower() for k, v in self.constants.items() if k.startswith(prefix)}


def parse_header(text: str, byteorder: str = sys.byteorder) -> Layout:
    """Parse the restricted C of oomtrace.h (see its opening comment) into structures of
    BYTEORDER ("little" or "big"; the running kernel's by default)."""
    text = _COMMENTS.sub("", text)
    constants = {name: int(value) for name, value in _DEFINE.findall(text)}
    for body in _ENUM.findall(text):
        constants.update((n, int(v)) for n, v in _ENUMERATOR.findall(body))
    base = {"little": ctypes.LittleEndianStructure, "big": ctypes.BigEndianStructure}[byteorder]
    structs = {name: _struct(name, body, constants, base) for name, body in _STRUCT.findall(text)}
    return Layout(constants, structs, byteorder)


def _struct(name: str, body: str, constants: dict[str, int],
            base: type[ctypes.Structure] = ctypes.Structure) -> type[ctypes.Structure]:
    fields: list[tuple[str, type]] = []
    for line in filter(str.strip, body.splitlines()):
        m = _MEMBER.match(line)
        if not m or m.group(1) not in _CTYPES:
            raise ValueError(f"struct {name}: cannot parse member {line.strip()!r}")
        ctype, member, dim = _CTYPES[m.group(1)], m.group(2), m.group(3)
        if dim is not None:
            ctype = ctype * (int(dim) if dim.isdigit() else constants[dim])
        fields.append((member, ctype))
    return type(name, (base,), {"_fields_": fields})


@cache
def layout() -> Layout:
    """The layout of the installed header (parsed once per process)."""
    return parse_header((bpf_dir() / HEADER).read_text())
