#!/bin/sh
# Inside a test VM (qemu image or Vagrant machine), as root: cgroup v2 controllers on, then the
# VM suite. Results: pytest's report on stdout and a JUnit file in .vm-results/.
cd "$(dirname "$0")/../.."
for c in cpuset cpu io memory hugetlb pids; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
done
mkdir -p .vm-results
echo "kernel $(uname -r); python $(python3 -c 'import sys; print(sys.version.split()[0])'); bcc $(python3 -c 'import bcc; print(bcc.__version__)' 2>&1)"
# What this kernel offers and which probes `run` uses, for the log and the VM stage's table.
PYTHONPATH=. python3 -m tracer doctor --cache-dir /tmp/oomtrace-doctor 2>&1 | sed 's/^/doctor: /'
OOMTRACE_VM=1 PYTHONDONTWRITEBYTECODE=1 python3 -m pytest -p no:cacheprovider -q -rs tests/vm \
    --junitxml=.vm-results/junit.xml
