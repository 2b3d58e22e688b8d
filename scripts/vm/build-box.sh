#!/usr/bin/env bash
# A local Vagrant box for libvirt made from the test image (build-image.sh: the same root
# filesystem, with systemd, sshd and the vagrant user), its kernel and initrd beside it for
# direct kernel boot.
# Usage: build-box.sh SUITE OUTDIR   → OUTDIR/{oomtrace-SUITE.box,vmlinuz,initrd.img}
set -euo pipefail
suite="$1"
out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out/image"
"$here/build-image.sh" "$suite" "$out/image"
image="$(dirname "$(readlink -f "$out/image/rootfs.img")")"
box="$image/oomtrace-$suite.box"
if [ ! -s "$box" ]; then
    rm -rf "$box.d" && mkdir -p "$box.d"
    qemu-img convert -O qcow2 "$image/rootfs.img" "$box.d/box.img"
    echo '{"provider": "libvirt", "format": "qcow2", "virtual_size": 3}' > "$box.d/metadata.json"
    tar -C "$box.d" -cf "$box.tmp" box.img metadata.json
    rm -rf "$box.d"
    mv "$box.tmp" "$box"
fi
ln -sf "$box" "$out/oomtrace-$suite.box"
ln -sf "$image/vmlinuz" "$out/vmlinuz"
ln -sf "$image/initrd.img" "$out/initrd.img"
echo "box $suite: $box"
