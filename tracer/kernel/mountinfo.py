"""/proc/self/mountinfo, parsed once for both readers of it (cgroup hierarchies, filesystems)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mount:
    device: str  # the mount source, e.g. /dev/vda1
    mountpoint: str
    fstype: str
    major: int
    minor: int
    root: str = "/"  # the part of the filesystem the mount shows
    super_options: tuple[str, ...] = ()


def parse_mountinfo(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        options = tuple(post_fields[2].split(",")) if len(post_fields) > 2 else ()
        out.append(Mount(post_fields[1], unescape(fields[4]), post_fields[0], int(major), int(minor),
                         unescape(fields[3]), options))
    return out


def unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
