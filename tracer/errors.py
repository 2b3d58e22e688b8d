"""The small exception tree of oomtrace.

Every error meant for the user derives from OomtraceError and carries a message that says
what to do; the CLI prints it and exits non-zero, library code never calls exit().
"""

from __future__ import annotations


class OomtraceError(Exception):
    """A failure with a message meant for the person running oomtrace."""


class KernelUnsupported(OomtraceError):
    """The running kernel lacks something oomtrace cannot work without."""


class ProbeError(OomtraceError):
    """The BPF program could not be compiled, loaded or attached."""


class NoSuchCgroup(OomtraceError):
    """A cgroup vanished (or never existed) while it was being read."""
