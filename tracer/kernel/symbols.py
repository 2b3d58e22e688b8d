"""Choosing the kernel symbol to put the oom_kill_process kprobe on.

GCC may rename the static function into a clone (oom_kill_process.isra.0,
.constprop.0, .part.0): such a clone is an entry point and counts. A .cold fragment is
split-off code in the middle of the function and never does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_CLONE = re.compile(r"^(?P<base>[A-Za-z_]\w*)(?P<suffix>(?:\.(?:isra|constprop|part|lto_priv)\.\d+)*)$")


def choose_symbol(function: str, names: Iterable[str], traceable: set[str] | None = None) -> str | None:
    """The best symbol for FUNCTION among kallsyms NAMES: the exact name, else its clone.

    TRACEABLE, when known (available_filter_functions), excludes notrace and inlined names.
    """
    candidates = []
    for name in names:
        m = _CLONE.match(name)
        if not m or m.group("base") != function:
            continue
        if traceable is not None and name not in traceable:
            continue
        candidates.append(name)
    if not candidates:
        return None
    # The exact name first, then the clone with the fewest suffixes.
    return min(candidates, key=lambda n: (n != function, n.count("."), n))


def kallsyms_text_names(path: Path = Path("/proc/kallsyms"), prefix: str = "") -> list[str]:
    """Names of text (code) symbols in kallsyms that start with PREFIX."""
    names = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW" and parts[2].startswith(prefix):
                    names.append(parts[2])
    except OSError:
        pass
    return names


def traceable_functions(tracefs: Path | None, prefix: str = "") -> set[str] | None:
    """Names in available_filter_functions starting with PREFIX, or None if unreadable."""
    if tracefs is None:
        return None
    try:
        with open(tracefs / "available_filter_functions") as f:
            return {line.split()[0] for line in f if line.startswith(prefix)}
    except OSError:
        return None
