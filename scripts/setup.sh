#!/usr/bin/env bash
# Set up oomtrace on Debian/Ubuntu: the distribution's BCC and bpftool, a venv that can see
# that BCC (it is built for /usr/bin/python3 and is not on PyPI), the project with its test
# and /usr/local/bin/oomtrace so that `sudo oomtrace run` works; matplotlib draws the charts
# of `oomtrace report` and of the collector's page. What only the tests need, scripts/test.sh
# installs.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-pip python3-bpfcc kmod mount python3-matplotlib >/dev/null
# bpftool turns the kernel's BTF into headers when the kernel ships none (Debian: bpftool;
# Ubuntu: linux-tools for the running kernel).
as_root apt-get install -y -qq --no-install-recommends bpftool >/dev/null 2>&1 ||
    as_root apt-get install -y -qq --no-install-recommends linux-tools-common "linux-tools-$(uname -r)" >/dev/null

/usr/bin/python3 -m venv --system-site-packages .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/python -c 'import bcc, tracer' # the venv must see the system bcc
as_root ln -sf "$PWD/.venv/bin/oomtrace" /usr/local/bin/oomtrace
echo "oomtrace is set up: sudo oomtrace doctor; sudo oomtrace run"
