"""Kernel strings on the real kernel: cgroup names that are not UTF-8, paths longer than the
kernel's tracepoint gives (or PATH_MAX), caches per hierarchy, control characters in a comm,
and `run`/`doctor` without privileges.

Deep and long cgroups are made, entered and removed relative to their parent's descriptor:
their paths do not fit in PATH_MAX.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgpack
import pytest

from tests.cgroups import Cgroup
from tests.kernel import CollectingSink, go, running_engine
from tracer.cli.tables import events_table
from tracer.events.sinks import format_text, make_sink
from tracer.kernel import cgroupfs
from tracer.stats.cgroups import Layout

pytestmark = pytest.mark.root
MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Names the kernel takes and UTF-8 does not: a lone byte, a cut sequence, a backslash beside.
ODD = b"odd\xff-\xe2\x82-\\x41"


def _expected(path: bytes) -> str:
    """The one rule, spelled out: UTF-8 as it is; else \\xNN for each bad byte and \\\\ for \\."""
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        return path.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def _name(level: int, tail: bytes = b"") -> bytes:
    """A 255-byte directory name (NAME_MAX), different per level and TAIL."""
    head = b"L%02d-" % level
    return head + b"n" * (255 - len(head) - len(tail)) + tail


def _encodable(rec: dict) -> None:
    """What every sink needs: strict UTF-8 strings (JSON, msgpack, the Forward protocol)."""
    json.dumps(rec, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
    msgpack.packb(rec)  # and here: msgpack's default is strict
    out, buf = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+b")
    with out, buf:
        for fmt in ("json", "msgpack", "text"):
            sink = make_sink(fmt, out, buf)
            sink.write(rec)
            sink.flush()
        buf.seek(0)
        assert msgpack.unpackb(buf.read()) == rec


class Tree:
    """Directories below one memory cgroup, reached only through descriptors."""

    def __init__(self, top: Cgroup) -> None:
        self.top = top
        self.fds: dict[tuple[bytes, ...], int] = {(): os.open(top.dir, DIR)}

    def mkdir(self, *names: bytes) -> tuple[bytes, ...]:
        """Make TOP/names[0]/names[1]/… (each level once); returns the key of the deepest."""
        key: tuple[bytes, ...] = ()
        for name in names:
            parent, key = self.fds[key], key + (name,)
            if key not in self.fds:
                try:
                    os.mkdir(name, dir_fd=parent)
                except FileExistsError:
                    pass
                self.fds[key] = os.open(name, DIR, dir_fd=parent)
        return key

    def path(self, key: tuple[bytes, ...]) -> bytes:
        """The cgroup path (as the kernel spells it) of KEY."""
        return b"/".join([os.fsencode(self.top.path), *key])

    def ino(self, key: tuple[bytes, ...]) -> int:
        return os.fstat(self.fds[key]).st_ino

    def hog(self, key: tuple[bytes, ...], comm: bytes | None = None) -> subprocess.Popen:
        """An allocating python child in KEY from its first instruction; COMM its task name."""
        procs = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.fds[key])
        code = "import sys\nsys.stdin.read(1)\n"
        if comm is not None:
            code += f"import ctypes\nctypes.CDLL(None).prctl(15, {comm!r}, 0, 0, 0)\n"
        code += "a = []\nwhile True:\n    a.append(b'x' * (1 << 20))\n"

        def join() -> None:
            os.write(procs, str(os.getpid()).encode())
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("0")

        try:
            return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, preexec_fn=join,
                                    pass_fds=(procs,))
        finally:
            os.close(procs)

    def remove(self) -> None:
        """rmdir everything below TOP, deepest first, then TOP itself."""
        for key in sorted(self.fds, key=len, reverse=True):
            fd = self.fds.pop(key)
            os.close(fd)
            if key:
                deadline = time.monotonic() + 5
                while True:
                    try:
                        os.rmdir(key[-1], dir_fd=self.fds[key[:-1]])
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
        self.top.remove()


def _oom(tree: Tree, key: tuple[bytes, ...], comm: bytes | None = None) -> int:
    hog = tree.hog(key, comm)
    go([hog])
    assert hog.wait(30) == -9
    return hog.pid


def _kill(sink: CollectingSink, pid: int) -> dict:
    [kill] = [r for r in sink.wait_for(lambda rs: any(r["type"] == "oom_kill" and r["pid"] == pid for r in rs))
              if r["type"] == "oom_kill" and r["pid"] == pid]
    return kill


def _cgroup_records(sink: CollectingSink, kind: str, ids: set[int], timeout: float = 10) -> dict[int, dict]:
    recs = sink.wait_for(lambda rs: len({r["cgroup_id"] for r in rs if r["type"] == kind
                                         and r["cgroup_id"] in ids}) >= len(ids), timeout)
    return {r["cgroup_id"]: r for r in recs if r["type"] == kind and r["cgroup_id"] in ids}


def _engine(cache_dir: Path, **config):
    return running_engine(cache_dir, 0, **config)


# --- 1 and 2: one string per cgroup, whole, from the walk and from the events ---------------------

def test_odd_and_deep_cgroups_made_before_start_are_walked_to_whole_escaped_paths(cache_dir):
    """Made before the engine starts, so only the walk knows them: a name that is not UTF-8,
    and a leaf 30 levels of 255-byte names down (7.7 kB: past the tracepoint's 1,023 bytes and
    PATH_MAX). An OOM kill in each names it whole; their rmdir events give the same string."""
    tree = Tree(Cgroup.memory("pre", 24 * MiB))
    try:
        odd = tree.mkdir(ODD)
        deep = tree.mkdir(*(_name(i) for i in range(29)), b"leaf\xfe")
        assert len(tree.path(deep)) > 4096
        with _engine(cache_dir) as engine:
            sink = engine.sink
            kills = {key: _kill(sink, _oom(tree, key, comm=b"hog\xff\\")) for key in (odd, deep)}
            for key, k in kills.items():
                assert k["cgroup"] == _expected(tree.path(key)) and k["cgroup_id"] == tree.ino(key)
                assert "cgroup_unknown" not in k and "memcg" not in k.get("escaped", [])
                assert k["comm"] == k["trigger_comm"] == "hog\\xff\\\\"
                assert sorted(k["escaped"]) == ["cgroup", "comm", "trigger_cgroup", "trigger_comm"]
                assert cgroupfs.unescape_kernel_text(k["cgroup"]) == tree.path(key)
                _encodable(k)
            assert kills[odd]["cgroup"] == tree.top.path + "/odd\\xff-\\xe2\\x82-\\\\x41"
            assert kills[odd]["memcg"] == tree.top.path  # (inference looks 8 levels up: not for deep)
            ids = {tree.ino(odd), tree.ino(deep)}
            tree.remove()
            deletes = _cgroup_records(sink, "cgroup_delete", ids)
            for k in kills.values():
                d = deletes[k["cgroup_id"]]
                assert d["cgroup"] == k["cgroup"] and d["escaped"] == ["cgroup"] and "cgroup_truncated" not in d
                _encodable(d)
    finally:
        if tree.fds:
            tree.remove()


def test_odd_and_long_cgroups_made_after_start_come_whole_from_their_mkdir_events(engine):
    """Made while the engine runs: the mkdir events give each path; five leaves whose paths
    share the 1,023 bytes the kernel's tracepoint keeps (four 255-byte levels, one with a byte
    that is not UTF-8) stay five paths; a leaf 30 levels down too. The walk gives the same
    strings, and OOM kills in them name them whole."""
    sink = engine.sink
    tree = Tree(Cgroup.memory("post", 24 * MiB))
    try:
        odd = tree.mkdir(ODD)
        stem = (_name(0), _name(1, b"\xff\\"), _name(2), _name(3))
        leaves = [tree.mkdir(*stem, _name(4, b"%d" % i)) for i in range(5)]
        deep = tree.mkdir(*(_name(i) for i in range(29)), b"leaf")
        keys = [odd, *leaves, deep]
        made = _cgroup_records(sink, "cgroup_create", {tree.ino(k) for k in keys})
        assert len(set(tree.path(k)[:1023] for k in leaves)) == 1  # what the tracepoint gives of each
        assert len({made[tree.ino(k)]["cgroup"] for k in leaves}) == 5
        for key in keys:
            rec = made[tree.ino(key)]
            assert rec["cgroup"] == _expected(tree.path(key))
            assert "cgroup_truncated" not in rec
            assert rec.get("escaped") == (None if key == deep else ["cgroup"])
            _encodable(rec)
        walked = cgroupfs.walk_entries(cgroupfs.Hierarchy(engine._builder.memory_hierarchy, ("memory",),
                                                          str(tree.top.dir.parent)))
        assert all(made[tree.ino(k)]["cgroup"] == walked[tree.ino(k)][0] for k in keys)
        for key in (odd, leaves[0], leaves[4], deep):
            k = _kill(sink, _oom(tree, key))
            assert k["cgroup"] == _expected(tree.path(key)) and k["cgroup_id"] == tree.ino(key)
            assert "cgroup_unknown" not in k
            _encodable(k)
    finally:
        tree.remove()


def test_container_stats_of_an_odd_cgroup_follow_the_same_rule(cache_dir):
    """`run --stats` names containers by what os reads (surrogate escapes): the msgpack stream
    must not stop at one (it did, with a traceback), and the name is the walk's string."""
    name = b"oomtrace-stats-" + uuid.uuid4().hex[:6].encode() + b"-\xff"
    odd = os.path.join(os.fsencode(Layout.detect().controllers["memory"][1]), name)
    os.mkdir(odd)
    try:
        done = subprocess.run([sys.executable, "-m", "tracer", "run", "--stats", "1", "-o", "msgpack", "-t",
                               "container_stats", "--duration", "3", "--cache-dir", str(cache_dir)],
                              capture_output=True, timeout=60, cwd=ROOT)
    finally:
        os.rmdir(odd)
    assert done.returncode == 0, done.stderr.decode()
    recs = list(msgpack.Unpacker(io.BytesIO(done.stdout)))  # strict UTF-8, as the collector reads it
    mine = [r for r in recs if r["type"] == "container_stats" and name[:21].decode() in r["cgroup"]]
    assert mine and all(r["cgroup"] == _expected(b"/" + name) and r["escaped"] == ["cgroup"] for r in mine)


# --- 3: a cache per hierarchy ---------------------------------------------------------------------

def test_churn_in_another_hierarchy_does_not_evict_memory_paths_and_unknown_paths_say_why(cache_dir):
    """3,000 cgroups made and removed in name=systemd with 200 paths a hierarchy: a removed
    memory cgroup's path stays known. Churn in the memory hierarchy itself does evict it, and a
    record then says so."""
    from tracer.kernel import bpf_source

    systemd = Path("/sys/fs/cgroup/systemd")
    if not (systemd / "cgroup.procs").is_file():
        pytest.skip("no name=systemd hierarchy at /sys/fs/cgroup/systemd")
    churn = systemd / f"oomtrace-churn-{uuid.uuid4().hex[:6]}"
    with _engine(cache_dir, cgroup_cache_size=200) as engine:
        sink, builder = engine.sink, engine._builder
        memory = builder.memory_hierarchy
        kept = Cgroup.memory("kept")
        kept_id = kept.id
        _cgroup_records(sink, "cgroup_create", {kept_id})
        kept.remove()
        churn.mkdir()
        dirs = [churn / f"c{i}" for i in range(3000)]
        try:
            ids = set()
            for d in dirs:
                d.mkdir()
                ids.add(os.stat(d).st_ino)
            for d in dirs:
                d.rmdir()
            assert len(_cgroup_records(sink, "cgroup_delete", ids, timeout=30)) == 3000
        finally:
            for d in dirs:
                if d.exists():
                    d.rmdir()
            churn.rmdir()
        assert builder.resolver.path(memory, kept_id) == kept.path  # removed, yet still known
        evictions = builder.resolver.paths.evictions()
        assert evictions.get(memory, 0) == 0 and sum(evictions.values()) >= 3000 - 200 // 8

        # The memory hierarchy's own churn evicts it: a record says why its path is unknown.
        storm = Cgroup.memory("storm")
        try:
            for i in range(250):
                (storm.dir / f"c{i}").mkdir()
            for i in range(250):
                (storm.dir / f"c{i}").rmdir()
            sink.wait_for(lambda rs: sum(r["type"] == "cgroup_delete" and r["cgroup"].startswith(storm.path + "/")
                                         for r in rs) >= 250)
        finally:
            storm.remove()
    # The engine has stopped: nothing else touches its resolver now.
    assert builder.resolver.paths.evictions()[memory] > 0
    layout = bpf_source.layout()
    event = layout.structs["oom_kill_event"](type=layout.constants["OT_EVENT_OOM_KILL"], pid=1, tid=1,
                                             memory_hierarchy=memory, cgroup_id=kept_id,
                                             trigger_cgroup_id=kept_id + 10**12)
    rec = builder.decode(bytes(event))
    assert rec["cgroup"] is None and rec["cgroup_unknown"] == "evicted"
    assert rec["trigger_cgroup"] is None and rec["trigger_cgroup_unknown"] == "never seen"


# --- 4: control characters reach no terminal ------------------------------------------------------

RED = b"\x1b[31mred\nhog"  # 12 bytes: fits TASK_COMM_LEN


def test_a_comm_with_control_characters_is_escaped_on_a_terminal_only(engine, cache_dir):
    """`run -o text` and the tables show the comm escaped; the record (JSON, msgpack) keeps it."""
    proc = subprocess.Popen([sys.executable, "-m", "tracer", "run", "-o", "text", "--cache-dir", str(cache_dir),
                             "-t", "oom_kill"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    tree = Tree(Cgroup.memory("red", 16 * MiB))
    try:
        assert b"start" in proc.stdout.readline()
        pid = _oom(tree, (), comm=RED)
        k = _kill(engine.sink, pid)
        time.sleep(0.5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        tree.remove()
    assert proc.returncode == 0, err.decode()
    assert k["comm"] == RED.decode() and json.loads(json.dumps(k))["comm"] == RED.decode()
    assert msgpack.unpackb(msgpack.packb(k))["comm"] == RED.decode()
    [line] = [ln for ln in out.decode().splitlines() if f"pid={pid} " in ln]
    assert "comm=\\x1b[31mred\\nhog" in line and "\x1b" not in out.decode()
    assert out.decode().count("\n") == len(out.decode().splitlines())  # no line broken in two
    text = format_text(k)
    assert "\x1b" not in text and "\n" not in text and "\\x1b[31mred\\nhog" in text
    table = events_table([dict(k, node="n\x1b]0;title\x07", cgroup="/c\x1b[2J")])
    assert not any(c in table for c in "\x1b\x07") and len(table.splitlines()) == 2
    assert "comm=\\x1b[31mred\\nhog" in table and "/c\\x1b[2J" in table and "trigger_comm=\\x1b[31mred\\nhog" in table


# --- 5: without privileges, one line ---------------------------------------------------------------

def _as_nobody(*args: str, caps: str | None = None) -> subprocess.CompletedProcess:
    priv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if caps:
        priv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    # `.venv/bin/oomtrace`, as this checkout (not whatever the venv has installed) runs it
    return subprocess.run([*priv, str(ROOT / ".venv" / "bin" / "python"), "-m", "tracer", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists() or not shutil.which("setpriv"),
                    reason="needs the checkout's .venv and setpriv")
def test_run_and_doctor_without_privileges_say_so_in_one_line():
    for command in (["run", "--duration", "1"], ["doctor"]):
        done = _as_nobody(*command)
        assert done.returncode == 1 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith(f"Error: oomtrace {command[0]} needs root, or ")
        assert "CAP_DAC_READ_SEARCH" in done.stderr
    assert "CAP_BPF" in _as_nobody("run").stderr and "CAP_PERFMON" in _as_nobody("run").stderr


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists() or not shutil.which("setpriv"),
                    reason="needs the checkout's .venv and setpriv")
def test_what_the_message_names_is_enough():
    """CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH with a writable --cache-dir: run works."""
    cache = Path(tempfile.mkdtemp(prefix="oomtrace-nobody-"))
    roots = Path(tempfile.mkdtemp(prefix="oomtrace-root-"))  # 0700, root's: nobody cannot write it
    try:
        cache.chmod(0o777)
        caps = "+bpf,+perfmon,+dac_read_search"
        done = _as_nobody("run", "--duration", "1", "-o", "json", "--cache-dir", str(cache), caps=caps)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[0])["type"] == "start"
        assert "raw tracepoint oom:mark_victim" in json.loads(done.stdout.splitlines()[0])["probes"]
        assert _as_nobody("doctor", "--cache-dir", str(cache), caps="+dac_read_search").returncode == 0
        # A cache directory it cannot write (like the default, root's): one line again, naming it.
        done = _as_nobody("run", "--duration", "1", "--cache-dir", str(roots / "cache"), caps=caps)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1 and str(roots) in done.stderr
        assert "Traceback" not in done.stderr and "--cache-dir" in done.stderr
    finally:
        shutil.rmtree(cache)
        shutil.rmtree(roots)


def test_the_privilege_check_names_what_is_missing(tmp_path):
    from tracer.kernel.doctor import NotPrivileged, require_privileges

    def status(*bits: int) -> Path:
        path = tmp_path / f"status-{'-'.join(map(str, bits))}"
        path.write_text(f"Name:\tx\nCapEff:\t{sum(1 << b for b in bits):016x}\n")
        return path

    last = tmp_path / "cap_last_cap"
    last.write_text("40\n")
    require_privileges("run", status(*range(41)), last)  # root
    require_privileges("run", status(21, 2), last)  # CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON
    require_privileges("run", status(38, 39, 2), last)
    with pytest.raises(NotPrivileged, match="lacks CAP_PERFMON$"):
        require_privileges("run", status(39, 2), last)
    last.write_text("37\n")  # before 5.8: no CAP_BPF, no CAP_PERFMON
    with pytest.raises(NotPrivileged, match="lacks CAP_SYS_ADMIN$"):
        require_privileges("run", status(38, 39, 2), last)
    require_privileges("doctor", status(2), last)
