#!/usr/bin/env bash
# The Vagrant leg of the VM tests, on a host without systemd: a local box built from Debian's
# packages, libvirt started here in a network namespace of its own (its NAT bridge, dnsmasq and
# the VM's SSH stay inside it), `vagrant up`, the VM suite over `vagrant ssh`, `vagrant destroy`,
# the daemons stopped by pid.
# Usage: run-vagrant.sh [SUITE] [WORKDIR]   (SUITE bookworm → machine debian12, trixie → debian13)
set -euo pipefail
suite="${1:-bookworm}"
machine=$([ "$suite" = trixie ] && echo debian13 || echo debian12)
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${2:-/tmp/oomtrace-vagrant/$suite}"
ns="oomtrace-vagrant"
mkdir -p "$work"
"$here/build-box.sh" "$suite" "$work/box"

export VAGRANT_HOME="$work/vagrant.d" VAGRANT_DEFAULT_PROVIDER=libvirt LIBVIRT_DEFAULT_URI=qemu:///system
export VAGRANT_DOTFILE_PATH="$work/dot-vagrant" VAGRANT_CHECKPOINT_DISABLE=1
export OOMTRACE_BOX_DEBIAN12="oomtrace-$suite-local" OOMTRACE_BOX_DEBIAN13="oomtrace-$suite-local"
export OOMTRACE_KERNEL="$(readlink -f "$work/box/vmlinuz")" OOMTRACE_INITRD="$(readlink -f "$work/box/initrd.img")"
export OOMTRACE_LIBVIRT_DRIVER="${OOMTRACE_LIBVIRT_DRIVER:-qemu}"  # this host's KVM hangs stock guests
in_ns() { ip netns exec "$ns" "$@"; }

cleanup() {
    (cd "$repo/vagrant" && in_ns vagrant destroy -f "$machine" >/dev/null 2>&1) || true
    virsh pool-destroy default >/dev/null 2>&1 || true
    virsh pool-undefine default >/dev/null 2>&1 || true
    for d in libvirtd virtlogd; do
        [ -s "$work/$d.pid" ] && kill "$(cat "$work/$d.pid")" 2>/dev/null || true
    done
    sleep 1
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
ip -n "$ns" link set lo up
rm -f "$work"/*.pid
in_ns virtlogd --daemon --pid-file "$work/virtlogd.pid"
in_ns libvirtd --daemon --pid-file "$work/libvirtd.pid"
for _ in $(seq 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
# A storage pool of this run's own (an earlier run's may point at a directory that is gone).
virsh pool-destroy default >/dev/null 2>&1 || true
virsh pool-undefine default >/dev/null 2>&1 || true
mkdir -p "$work/pool"
virsh pool-define-as default dir --target "$work/pool" >/dev/null
virsh pool-start default >/dev/null

start=$(date +%s)
vagrant box add --force --name "oomtrace-$suite-local" "$work/box/oomtrace-$suite.box" >/dev/null
cd "$repo/vagrant"
in_ns vagrant up "$machine" --provider libvirt | sed 's/^/vagrant: /'
set +e
in_ns vagrant ssh "$machine" -c 'sudo sh /opt/oomtrace/scripts/vm/guest-suite.sh' >"$work/results.log" 2>&1
rc=$?
in_ns vagrant ssh "$machine" -c 'cat /opt/oomtrace/.vm-results/junit.xml' >"$work/junit.xml" 2>/dev/null
set -e
seconds=$(( $(date +%s) - start ))
read -r passed failed skipped <<<"$(python3 "$here/junit_counts.py" "$work/junit.xml")"
release=$(in_ns vagrant ssh "$machine" -c 'uname -r' 2>/dev/null | tr -d '\r')
echo "$suite $release vagrant/$OOMTRACE_LIBVIRT_DRIVER passed=$passed failed=$failed skipped=$skipped seconds=$seconds" \
    "$("$here/doctor_abi.sh" "$work/results.log")" | tee "$work/summary"
cat "$work/results.log"
[ "$rc" = 0 ] && [ "$passed" != 0 ] || { echo "VM suite over Vagrant ($suite) failed (rc=$rc)" >&2; exit 1; }
