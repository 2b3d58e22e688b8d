#!/usr/bin/env bash
# The VM stage: the VM suite on Debian's own kernels under plain qemu -- bookworm (6.1),
# bullseye (5.10: the pid-only mark_victim), trixie (6.12), sid (the newest) -- and on bookworm
# through Vagrant (libvirt). Installs what it needs; prints a table; fails when any VM test fails
# or a VM does not come up. Run as root.
#   OOMTRACE_VM_SUITES   the qemu suites, in order (default: "bookworm bullseye trixie sid")
#   OOMTRACE_VM_VAGRANT  the Vagrant suite ("" for none; default bookworm)
#   OOMTRACE_VM_WORK     work directory; OOMTRACE_VM_CACHE image cache (build-image.sh)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${OOMTRACE_VM_WORK:-/tmp/oomtrace-vm-ci}"
read -r -a suites <<<"${OOMTRACE_VM_SUITES-bookworm bullseye trixie sid}"  # "" runs none
vagrant_suite="${OOMTRACE_VM_VAGRANT-bookworm}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
as_root apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils mmdebstrap e2fsprogs \
    vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu dnsmasq-base iptables \
    openssh-client rsync >/dev/null || { echo "vm stage: cannot install qemu/vagrant" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
stage_start=$(date +%s)

status=0
run() {  # NAME COMMAND...
    local name="$1"; shift
    local t0=$(date +%s)
    echo "== $name"
    if "$@" >"$work/$name.log" 2>&1; then :; else status=1; echo "$name FAILED: see $work/$name.log" >&2; tail -40 "$work/$name.log" >&2; fi
    grep -E '^[a-z]+ [^ ]+ (qemu|vagrant)/' "$work/$name.log" | tail -1 >>"$work/table" \
        || echo "${name#*-} - ${name%%-*} passed=0 failed=? skipped=0 seconds=?" >>"$work/table"
    echo "$name: $(( $(date +%s) - t0 )) s" >>"$work/times"
}
# Each next image builds while the current VM runs: building is mostly I/O, the VM is CPU.
prebuild=""
for i in "${!suites[@]}"; do
    next="${suites[$((i + 1))]:-}"
    if [ -n "$next" ]; then
        "$here/build-image.sh" "$next" "$work/prebuild-$next" >"$work/prebuild-$next.log" 2>&1 &
        prebuild=$!
    fi
    run "qemu-${suites[$i]}" "$here/run-qemu.sh" "${suites[$i]}" "$work/qemu-${suites[$i]}"
    if [ -n "$next" ]; then
        wait "$prebuild" || { status=1; echo "$next image build failed: $work/prebuild-$next.log" >&2; }
    fi
done
if [ -n "$vagrant_suite" ]; then
    run "vagrant-$vagrant_suite" "$here/run-vagrant.sh" "$vagrant_suite" "$work/vagrant-$vagrant_suite"
fi

echo
printf '%-9s %-24s %-11s %6s %6s %7s  %-11s %s\n' suite kernel path passed failed seconds mark_victim kprobes
while read -r suite kernel path passed failed _ seconds abi kprobes; do
    printf '%-9s %-24s %-11s %6s %6s %7s  %-11s %s\n' "$suite" "$kernel" "$path" "${passed#passed=}" \
        "${failed#failed=}" "${seconds#seconds=}" "${abi#mark_victim=}" "${kprobes#kprobes=}"
done <"$work/table"
echo "VM stage: $(( $(date +%s) - stage_start )) s"
exit $status
