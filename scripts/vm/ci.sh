#!/usr/bin/env bash
# The VM stage: the VM suite on Debian 12 (6.1) and 13 (6.12) under plain qemu, and on Debian 12
# through Vagrant (libvirt). Installs what it needs; prints a table; fails when any VM test
# fails or a VM does not come up. Run as root.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${OOMTRACE_VM_WORK:-/tmp/oomtrace-vm-ci}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
as_root apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils mmdebstrap e2fsprogs \
    vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu dnsmasq-base iptables \
    openssh-client rsync >/dev/null || { echo "vm stage: cannot install qemu/vagrant" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
stage_start=$(date +%s)

# The trixie image builds while the bookworm VM runs: building is mostly I/O, the VM is CPU.
"$here/build-image.sh" trixie "$work/prebuild-trixie" >"$work/prebuild-trixie.log" 2>&1 &
prebuild=$!

status=0
run() {  # NAME COMMAND...
    local name="$1"; shift
    echo "== $name"
    if "$@" >"$work/$name.log" 2>&1; then :; else status=1; echo "$name FAILED: see $work/$name.log" >&2; tail -40 "$work/$name.log" >&2; fi
    grep -E '^(bookworm|trixie) ' "$work/$name.log" | tail -1 >>"$work/table" || echo "$name - - passed=0 failed=? skipped=0 seconds=?" >>"$work/table"
}
run qemu-bookworm "$here/run-qemu.sh" bookworm "$work/qemu-bookworm"
wait "$prebuild" || { status=1; echo "trixie image build failed: $work/prebuild-trixie.log" >&2; }
run qemu-trixie "$here/run-qemu.sh" trixie "$work/qemu-trixie"
run vagrant-bookworm "$here/run-vagrant.sh" bookworm "$work/vagrant-bookworm"

echo
printf '%-9s %-24s %-12s %7s %7s %8s\n' suite kernel path passed failed seconds
while read -r suite kernel path passed failed _ seconds; do
    printf '%-9s %-24s %-12s %7s %7s %8s\n' "$suite" "$kernel" "$path" "${passed#passed=}" "${failed#failed=}" "${seconds#seconds=}"
done <"$work/table"
echo "VM stage: $(( $(date +%s) - stage_start )) s"
exit $status
