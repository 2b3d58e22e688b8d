#!/usr/bin/env bash
# Run the tests as root: the host suite (it loads BPF programs and OOM-kills processes in
# memory cgroups it creates), then the VM stage (scripts/vm/ci.sh: the VM suite on Debian 12
# and 13 kernels under qemu and through Vagrant, about 10 minutes).
#   scripts/test.sh              everything
#   scripts/test.sh --host [ARG…]  the host suite only; ARGs go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then exec sudo "$0" "$@"; fi
if [ "${1:-}" = "--host" ]; then
    shift
    exec .venv/bin/pytest "$@"
fi
.venv/bin/pytest
scripts/vm/ci.sh
