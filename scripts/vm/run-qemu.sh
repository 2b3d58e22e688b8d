#!/usr/bin/env bash
# Boot a test image under qemu and run the VM suite in it: KVM when it works, else software
# emulation. The checkout goes in on a second disk; the suite's report comes back on the second
# serial port and as a JUnit file on that disk; the kernel's console goes to console.log.
# Usage: run-qemu.sh SUITE [WORKDIR]   → exit status 0 when every VM test passed
set -euo pipefail
suite="$1"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${2:-/tmp/oomtrace-vm/$suite}"
rm -rf "$work" && mkdir -p "$work/code"

kvm_works() {
    # Not just "qemu starts with -accel kvm": some hosts' KVM (a PVM flavour, see VM-FACTS)
    # starts stock guests and then hangs them. Works = the guest kernel prints its banner.
    [ -w /dev/kvm ] || return 1
    timeout 8 qemu-system-x86_64 -machine pc -accel kvm -m 256 -kernel "$work/image/vmlinuz" \
        -append "console=ttyS0 panic=-1" -nographic -monitor none -serial "file:$work/kvm-probe.log" \
        -no-reboot -display none >/dev/null 2>&1
    grep -q "Linux version" "$work/kvm-probe.log" 2>/dev/null
}
"$here/build-image.sh" "$suite" "$work/image"

# The working tree as the host suite sees it (tracked files and new ones not ignored), on a
# small ext4 disk the guest mounts.
git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$work/code"
mke2fs -q -t ext4 -L oomtrace-code -d "$work/code" "$work/code.img" 256M

accel="${OOMTRACE_VM_ACCEL:-$(kvm_works && echo kvm || echo tcg)}"
# One TCG thread for both vCPUs: with one thread per vCPU, 6.12's live text patching (int3,
# then the rest, while the other CPU runs) once oopsed the guest on an int3 in the scheduler.
tcg_opts=$([ "$accel" = tcg ] && echo ",thread=single" || true)
start=$(date +%s)
timeout "${OOMTRACE_VM_TIMEOUT:-900}" qemu-system-x86_64 -machine pc -accel "$accel$tcg_opts" -cpu max -m 2048 -smp 2 \
    -kernel "$work/image/vmlinuz" -initrd "$work/image/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw init=/usr/local/sbin/oomtrace-vm-init panic=1 mitigations=off" \
    -drive "file=$work/image/rootfs.img,if=virtio,format=raw,snapshot=on" \
    -drive "file=$work/code.img,if=virtio,format=raw" \
    -nographic -monitor none -serial "file:$work/console.log" -serial "file:$work/results.log" \
    -nic none -no-reboot || true
seconds=$(( $(date +%s) - start ))
debugfs -R "dump /.vm-results/junit.xml $work/junit.xml" "$work/code.img" >/dev/null 2>&1 || true

rc=$(sed -n 's/^OOMTRACE-VM-RC \([0-9]*\).*/\1/p' "$work/results.log" | tail -1)
summary=$(python3 "$here/junit_counts.py" "$work/junit.xml")
read -r passed failed skipped <<<"$summary"
echo "$suite $(cat "$work/image/release") qemu/$accel passed=$passed failed=$failed skipped=$skipped seconds=$seconds" \
    "$("$here/doctor_abi.sh" "$work/results.log")" | tee "$work/summary"
cat "$work/results.log"
if [ "${rc:-}" != 0 ] || [ "$passed" = 0 ]; then
    echo "VM suite on $suite failed (rc=${rc:-none}); console: $work/console.log" >&2
    tail -30 "$work/console.log" >&2
    exit 1
fi
