"""oomtrace: what was OOM-killed, in which container, and why."""

__version__ = "0.1.0"
