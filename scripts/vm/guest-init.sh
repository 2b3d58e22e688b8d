#!/bin/sh
# PID 1 of the qemu test image (installed as /usr/local/sbin/oomtrace-vm-init): mount what a
# boot would, run the suite from the code disk (/dev/vdb), report on the second serial port,
# power off. Kernel messages stay on the first serial port (the console log).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -o remount,rw /
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /run /tmp /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
hostname oomtrace-vm
mkdir -p /opt/oomtrace
if mount /dev/vdb /opt/oomtrace; then
    sh /opt/oomtrace/scripts/vm/guest-suite.sh >/dev/ttyS1 2>&1
    echo "OOMTRACE-VM-RC $?" >/dev/ttyS1
    sync
    umount /opt/oomtrace
else
    echo "OOMTRACE-VM-RC 99 (no code disk)" >/dev/ttyS1
fi
sync
echo o >/proc/sysrq-trigger
sleep 30
