"""Every default that more than one place needs: paths, ports and intervals, said once."""

from __future__ import annotations

from pathlib import Path

CACHE_DIR = Path("/var/cache/oomtrace")  # header trees generated from BTF, keyed by kernel
STATE_DIR = Path("/var/lib/oomtrace")
SPOOL_DIR = STATE_DIR / "spool"  # Forward chunks waiting for the collector
SPOOL_MAX_MB = 256
FORWARD_PORT = 24224  # the Forward protocol's usual port
COLLECTOR_LISTEN = f"tcp://127.0.0.1:{FORWARD_PORT}"  # loopback unless told otherwise
PRESSURE_INTERVAL = 10.0  # seconds between memory_pressure records
HOUSEKEEPING_INTERVAL = 10.0  # seconds between stats sweeps: kubelet's
