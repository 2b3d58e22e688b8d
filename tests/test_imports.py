"""`oomtrace --help` (and each command's --help) must not load BCC, pyroute2 or the event engine:
they cost seconds and tens of MB, and a host without them must still get the CLI's help.

Each check runs in a fresh interpreter. A finder on sys.meta_path notes, for each forbidden module,
the chain of modules whose top-level code imported it, so a failure names the import to make lazy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("bcc", "pyroute2", "tracer.events.engine")

PROBE = r"""
import contextlib, io, json, sys

FORBIDDEN = __FORBIDDEN__
chains = {}


class Spy:
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN) and name not in chains:
            chain, frame = [], sys._getframe(1)
            while frame is not None:  # the module-level frames: who imports whom
                if frame.f_code.co_name == "<module>":
                    chain.append(frame.f_globals.get("__name__", "?") + ":" + str(frame.f_lineno))
                frame = frame.f_back
            chains[name] = list(reversed(chain))
        return None  # only watching: the normal finders do the import


sys.meta_path.insert(0, Spy())
import tracer.cli
from tracer.cli import main

with contextlib.redirect_stdout(io.StringIO()) as out:
    main.main(sys.argv[1:], standalone_mode=False)
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
print(json.dumps({"loaded": loaded, "chains": chains, "help": out.getvalue()}))
""".replace("__FORBIDDEN__", repr(FORBIDDEN))


def _commands() -> list[str]:
    from tracer.cli import main

    return sorted(main.commands)


@pytest.mark.parametrize("args", [["--help"]] + [[c, "--help"] for c in _commands()], ids=" ".join)
def test_help_loads_no_bpf_netlink_or_engine(args):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "Usage:" in report["help"]
    chains = "\n".join(f"  {m}: " + " -> ".join(c) for m, c in report["chains"].items())
    assert report["loaded"] == [], f"`oomtrace {' '.join(args)}` imported {report['loaded']}:\n{chains}"
