#!/bin/sh
# The one provisioning recipe for oomtrace's VM tests, for the qemu images (run by mmdebstrap in
# the image's chroot) and for the Vagrant machines (run by Vagrant's shell provisioner):
# the packages oomtrace and its VM suite need, from Debian, kernel headers matching the kernel.
# Usage: provision.sh [KERNEL_RELEASE]   (default: the running kernel's)
set -eu
export DEBIAN_FRONTEND=noninteractive
release="${1:-$(uname -r)}"
packages="python3 python3-bpfcc bpftool iproute2 procps kmod util-linux e2fsprogs python3-pyroute2
    python3-msgpack python3-click python3-prometheus-client python3-pytest linux-headers-$release"
# Offline when everything is there already (a test box's network may reach nothing else).
# shellcheck disable=SC2086
if ! dpkg -s $packages >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
# `oomtrace` runs the checkout in /opt/oomtrace (uploaded or on the code disk) with these packages.
cat > /usr/local/bin/oomtrace <<'SH'
#!/bin/sh
PYTHONPATH=/opt/oomtrace exec python3 -m tracer "$@"
SH
chmod 755 /usr/local/bin/oomtrace
