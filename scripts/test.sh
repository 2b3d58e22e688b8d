#!/usr/bin/env bash
# Run the test suite as root: the kernel tests load BPF programs and OOM-kill processes
# in memory cgroups they create. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then exec sudo "$0" "$@"; fi
exec .venv/bin/pytest "$@"
