#!/usr/bin/env python3
"""Extract cAdvisor's Prometheus metric table into tests/data/cadvisor-metrics-<rev>.json.

Usage: scripts/cadvisor_metrics.py GIT_DIR REV > tests/data/cadvisor-metrics-REV.json
GIT_DIR is a cAdvisor clone or bare mirror (files are read with `git show REV:path`). Only
facts are kept: each metric's name, help text, type, label names and the metric group
(cAdvisor's --disable_metrics names) that turns it on; never Go code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

FILES = {"metrics/prometheus.go": ("id", "image", "name"),  # DefaultContainerLabels' base labels
         "metrics/prometheus_machine.go": ("boot_id", "machine_id", "system_uuid")}
_KINDS = re.compile(r'^\s*(\w+)\s+MetricKind\s*=\s*"(\w+)"')
_HAS = re.compile(r"includedMetrics\.Has\(container\.(\w+)\)")
_NAME = re.compile(r'^\s*name:\s*"(\w+)"')
_HELP = re.compile(r'^\s*help:\s*"((?:[^"\\]|\\.)*)"')
_TYPE = re.compile(r"^\s*valueType:\s*prometheus\.(Counter|Gauge)Value")
_LABELS = re.compile(r"^\s*extraLabels:\s*\[\]string\{([^}]*)\}")
_DESC = re.compile(r'prometheus\.NewDesc\("(\w+)",\s*"((?:[^"\\]|\\.)*)"')
_OPTS = re.compile(r'^\s*(Namespace|Name|Help):\s*"((?:[^"\\]|\\.)*)"')
_CONST = re.compile(r'^\s*(\w+)\s*=\s*"(\w+)"')


def show(git_dir: str, rev: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{rev}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def parse(source: str, kinds: dict[str, str], base: tuple[str, ...], consts: dict[str, str]) -> dict[str, dict]:
    metrics: dict[str, dict] = {}
    groups: list[tuple[int, str]] = []  # (brace depth at the `if`, group) of the open Has() blocks
    depth = 0
    current: dict | None = None
    opts: dict[str, str] = {}
    for line in source.splitlines():
        has = _HAS.search(line)
        if has and line.rstrip().endswith("{"):
            groups.append((depth, kinds[has.group(1)]))
        m = _NAME.match(line)
        if m:
            current = metrics.setdefault(m.group(1), {"help": "", "type": "gauge", "labels": list(base),
                                                      "group": groups[-1][1] if groups else None})
        elif current is not None and (h := _HELP.match(line)):
            current["help"] = h.group(1).replace('\\"', '"')
        elif current is not None and (t := _TYPE.match(line)):
            current["type"] = t.group(1).lower()
        elif current is not None and (lab := _LABELS.match(line)):
            names = [s.strip() for s in lab.group(1).split(",") if s.strip()]
            current["labels"] = list(base) + [consts.get(n, n.strip('"')) for n in names]
        for d in _DESC.finditer(line):  # spec metrics and version info: gauges outside the table
            if d.group(1) not in metrics and d.group(1) != "cadvisor_version_info":
                metrics[d.group(1)] = {"help": d.group(2), "type": "gauge", "labels": list(base), "group": None}
        o = _OPTS.match(line)
        if o:  # GaugeOpts{Namespace, Name, Help}: the scrape_error gauges
            opts[o.group(1)] = o.group(2)
            if len(opts) == 3:
                metrics[f"{opts['Namespace']}_{opts['Name']}"] = {"help": opts["Help"], "type": "gauge",
                                                                  "labels": [], "group": None}
                opts = {}
        depth += line.count("{") - line.count("}")
        while groups and depth <= groups[-1][0]:
            groups.pop()
    return metrics


def main() -> None:
    git_dir, rev = sys.argv[1], sys.argv[2]
    kinds = {m.group(1): m.group(2) for m in map(_KINDS.match, show(git_dir, rev, "container/factory.go")
                                                  .splitlines()) if m}
    sources = {path: show(git_dir, rev, path) for path in FILES}
    consts = {m.group(1): m.group(2) for text in sources.values() for m in map(_CONST.match, text.splitlines()) if m}
    table: dict[str, dict] = {}
    for path, base in FILES.items():
        table.update(parse(sources[path], kinds, base, consts))
    commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", f"{rev}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    json.dump({"source": "github.com/google/cadvisor", "revision": rev, "commit": commit,
               "files": sorted(FILES), "metrics": dict(sorted(table.items()))}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
