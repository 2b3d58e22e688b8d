#!/usr/bin/env bash
# Build (or reuse from the cache) a bootable Debian test image: rootfs.img (ext4), vmlinuz,
# initrd.img. The kernel and its headers come from Debian's packages and are installed
# together; scripts/vm/provision.sh (the same recipe as Vagrant's) runs inside the chroot.
# The same root filesystem serves qemu (booted with init=oomtrace-vm-init) and, as a Vagrant
# box (build-box.sh), libvirt (booted with systemd): it has systemd, sshd, sudo, rsync and the
# `vagrant` user with Vagrant's well-known insecure key, DHCP by systemd-networkd.
# Usage: build-image.sh SUITE OUTDIR
#   SUITE: bookworm → 6.1, trixie → 6.12, sid → Debian's newest kernel, each on its own userland;
#   bullseye → Debian 11's kernel (5.10) and headers on bookworm's userland: bullseye's python3
#   (3.9) is older than oomtrace needs (3.10), so its BCC (0.18) cannot run oomtrace.
# Cache: $OOMTRACE_VM_CACHE (default /var/cache/oomtrace-vm): downloaded .debs, and the
# image itself keyed by suite + this script + provision.sh + guest-init.sh.
set -euo pipefail
suite="$1"
out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${OOMTRACE_VM_CACHE:-/var/cache/oomtrace-vm}"
key="$(cat "$here/build-image.sh" "$here/provision.sh" "$here/guest-init.sh" "$here/vagrant-insecure.pub" \
    | sha256sum | cut -c1-16)"
image="$cache/images/$suite-$key"
mkdir -p "$cache/debs/$suite" "$out"
mirror=http://deb.debian.org/debian
aptopts=()
case "$suite" in
    bullseye) userland=bookworm; kernel="linux-image-amd64/bullseye,linux-headers-amd64/bullseye"
              mirrors=("$mirror" "deb $mirror bullseye main") ;;
    *) userland="$suite"; kernel="linux-image-amd64,linux-headers-amd64"; mirrors=("$mirror") ;;
esac
# sid's Release is valid for a week only; a mirror that lags behind serves an expired one.
[ "$suite" = sid ] && aptopts=(--aptopt='Acquire::Check-Valid-Until "false"')

if [ ! -s "$image/rootfs.img" ]; then
    root="$(mktemp -d /var/tmp/oomtrace-rootfs.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    # A small initramfs (virtio and ext4 only): it boots in seconds under software emulation.
    mmdebstrap --mode=root --variant=minbase --quiet "${aptopts[@]}" \
        --include="$kernel",initramfs-tools,ca-certificates,systemd-sysv,udev,openssh-server,sudo,rsync \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --skip=download/empty --skip=essential/unlink \
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives "$1"/usr/share/initramfs-tools/modules.d "$1"/etc/initramfs-tools/conf.d' \
        --setup-hook="sync-in '$cache/debs/$suite' /var/cache/apt/archives/" \
        --setup-hook='printf "virtio_pci\nvirtio_blk\next4\n" > "$1"/usr/share/initramfs-tools/modules.d/oomtrace' \
        --setup-hook='echo MODULES=list > "$1"/etc/initramfs-tools/conf.d/oomtrace' \
        --customize-hook="copy-in '$here/provision.sh' /tmp" \
        --customize-hook='chroot "$1" sh /tmp/provision.sh "$(ls "$1"/lib/modules | sort -V | tail -1)"' \
        --customize-hook="copy-in '$here/guest-init.sh' /usr/local/sbin" \
        --customize-hook='mv "$1"/usr/local/sbin/guest-init.sh "$1"/usr/local/sbin/oomtrace-vm-init; chmod 755 "$1"/usr/local/sbin/oomtrace-vm-init' \
        --customize-hook='echo oomtrace-vm > "$1"/etc/hostname; printf "127.0.0.1 localhost oomtrace-vm\n" > "$1"/etc/hosts' \
        --customize-hook="copy-in '$here/vagrant-insecure.pub' /tmp" \
        --customize-hook='chroot "$1" useradd -m -s /bin/bash vagrant
            mkdir -p "$1"/home/vagrant/.ssh && cp "$1"/tmp/vagrant-insecure.pub "$1"/home/vagrant/.ssh/authorized_keys
            chroot "$1" chown -R vagrant:vagrant /home/vagrant/.ssh && chmod 700 "$1"/home/vagrant/.ssh
            echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$1"/etc/sudoers.d/vagrant
            printf "[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n" > "$1"/etc/systemd/network/80-dhcp.network
            chroot "$1" systemctl enable systemd-networkd >/dev/null 2>&1
            printf "/dev/vda / ext4 rw 0 1\n" > "$1"/etc/fstab' \
        --customize-hook="sync-out /var/cache/apt/archives '$cache/debs/$suite'" \
        "$userland" "$root" "${mirrors[@]}"
    mkdir -p "$image.tmp"
    cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$image.tmp/vmlinuz"
    cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$image.tmp/initrd.img"
    ls "$root"/lib/modules > "$image.tmp/release"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mke2fs -q -t ext4 -L oomtrace-root -d "$root" "$image.tmp/rootfs.img" 3G
    rm -rf "$image"
    mv "$image.tmp" "$image"
fi
for f in vmlinuz initrd.img rootfs.img release; do
    ln -sf "$image/$f" "$out/$f"
done
echo "image $suite: kernel $(cat "$image/release") in $image"
