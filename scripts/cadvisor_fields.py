#!/usr/bin/env python3
"""Extract the JSON tags of cAdvisor's Go structs into tests/data/cadvisor-json-fields-<rev>.json.

Usage: scripts/cadvisor_fields.py GIT_DIR REV > tests/data/cadvisor-json-fields-REV.json
GIT_DIR is a cAdvisor clone or bare mirror; the files are read with `git show REV:path`, so no
work tree is needed. Only facts (names, tags, types) are kept, never Go code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

FILES = ("info/v1/container.go", "info/v1/machine.go", "info/v1/docker.go",
         "info/v2/container.go", "info/v2/machine.go",
         # master (2026): info/v1 and most of info/v2 are aliases of these
         "lib/model/container.go", "lib/model/machine.go", "lib/model/projection.go")

_STRUCT = re.compile(r"^type (\w+) struct \{\s*$")
# A field line: Name Type `json:"..."` (an embedded struct has no Name).
_FIELD = re.compile(r'^\s*(\w+)?\s+([^\s`]+)\s*`[^`]*json:"([^"]*)"[^`]*`')
# A field without a tag: Go's encoding/json names it by the Go field name.
_UNTAGGED = re.compile(r"^\s*([A-Z]\w*)\s+([^\s`/]+)\s*(?://.*)?$")
# A named type over a basic one (type EventType string): its JSON is the basic type's.
_NAMED = re.compile(r"^type (\w+) (string|u?int\d*|float\d+|bool)\s*(?://.*)?$")
_EMBEDDED = re.compile(r"^\s*(\*?[\w.]+)\s*(?:`[^`]*`)?\s*(?://.*)?$")


def named_types(source: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(_NAMED.match, source.splitlines()) if m}


def parse(source: str) -> dict[str, list[dict[str, object]]]:
    structs: dict[str, list[dict[str, object]]] = {}
    current: list[dict[str, object]] | None = None
    for line in source.splitlines():
        m = _STRUCT.match(line)
        if m:
            current = structs.setdefault(m.group(1), [])
            continue
        if current is None:
            continue
        if line.startswith("}"):
            current = None
            continue
        f = _FIELD.match(line)
        if f and f.group(1):
            name, gotype, tag = f.group(1), f.group(2), f.group(3)
            parts = tag.split(",")
            current.append({"field": name, "json": parts[0] or name, "omitempty": "omitempty" in parts[1:],
                            "inline": "inline" in parts[1:], "type": gotype,
                            "pointer": gotype.startswith("*"), "skip": parts[0] == "-"})
            continue
        u = _UNTAGGED.match(line)
        if u:
            current.append({"field": u.group(1), "json": u.group(1), "omitempty": False, "inline": False,
                            "type": u.group(2), "pointer": u.group(2).startswith("*"), "skip": False})
            continue
        e = _EMBEDDED.match(line)
        if e and not line.strip().startswith("//") and line.strip():
            gotype = e.group(1)
            current.append({"field": gotype.lstrip("*").split(".")[-1], "json": "", "omitempty": False,
                            "inline": True, "type": gotype, "pointer": gotype.startswith("*"),
                            "skip": False})
    return structs


def main(git_dir: str, rev: str) -> None:
    commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", f"{rev}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    out: dict[str, object] = {
        "_comment": f"JSON tags of cAdvisor's Go structs, made by scripts/cadvisor_fields.py from {rev}",
        "revision": rev, "commit": commit, "files": {}, "named_types": {}}
    for path in FILES:
        shown = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            out["files"][path] = parse(shown.stdout)  # type: ignore[index]
            out["named_types"].update(named_types(shown.stdout))  # type: ignore[attr-defined]
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
