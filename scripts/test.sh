#!/usr/bin/env bash
# Run the tests as root: lint and types (ruff, mypy), the host suite (it loads BPF programs
# and OOM-kills processes in memory cgroups it creates), then the VM stage (scripts/vm/ci.sh:
# the VM suite on Debian 12 and 13 kernels under qemu and through Vagrant, about 10 minutes).
#   scripts/test.sh              everything
#   scripts/test.sh --host [ARG…]  the host suite only; ARGs go to pytest
#   scripts/test.sh --lint       ruff and mypy only
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then exec sudo "$0" "$@"; fi
[ -x .venv/bin/python ] || { echo "test.sh: run scripts/setup.sh first" >&2; exit 1; }

# What only the tests need: pytest and friends, ruff and mypy; Fluent's own Node.js client
# and server as real Forward protocol peers (in CI they must be there; elsewhere their
# tests say why they skip). The VM stage installs its own (scripts/vm/ci.sh).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
if [ ! -d tests/peers/node_modules ]; then
    command -v npm >/dev/null || { apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; } || true; }
    (cd tests/peers && npm ci --silent --no-audit --no-fund) || echo "test.sh: no Node.js peers for the tests" >&2
fi
# Real container runtimes for the workload-identity tests (tests/runtimes.py starts and stops
# its own dockerd, containerd and podman service; ctr comes with containerd, runc with both;
# the local image is made from busybox-static). In CI they must be there; elsewhere those
# tests say why they skip.
# mmdebstrap makes the base of the container image (tests/test_deploy_image.py).
runtimes="dockerd containerd ctr runc podman conmon mmdebstrap"
if ! (for p in $runtimes; do command -v "$p" >/dev/null || exit 1; done; [ -x /bin/busybox ]); then
    pkgs="docker.io containerd runc podman conmon busybox-static mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null; } ||
        echo "test.sh: no container runtimes for the tests" >&2
fi
# A real Prometheus (Debian's 2.42) scrapes `run --http` in tests/test_serve_prometheus.py,
# with promtool to check the exposition; the tests start and stop it themselves.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            prometheus >/dev/null; } || echo "test.sh: no prometheus for the tests" >&2
fi
# Debian's chromium renders the collector's web page in tests/test_collect_web.py (headless).
if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium >/dev/null; } || echo "test.sh: no chromium for the tests" >&2
fi
lint() {
    .venv/bin/ruff check tracer tests scripts
    .venv/bin/mypy
}
if [ "${1:-}" = "--lint" ]; then
    lint
    exit
fi
if [ "${1:-}" = "--host" ]; then
    shift
    exec .venv/bin/pytest "$@"
fi
lint
.venv/bin/pytest
scripts/vm/ci.sh
