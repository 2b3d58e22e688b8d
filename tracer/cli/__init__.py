"""The command line: click commands that parse flags and call the agent, the collector or the
stats Interface. No BPF, /proc or cgroup logic lives here."""

from tracer.cli.main import main

__all__ = ["main"]
