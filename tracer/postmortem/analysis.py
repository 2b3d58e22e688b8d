"""What an `oom_report` says, in one sentence and a few figures: which memory grew, from what to
what, how fast, whether it hit the limit, what page cache and shmem held, whether reclaim
stalled. Plain functions of the record (no I/O, no chart library): `oomtrace report` and the
collector's web page both use them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MiB = 1 << 20
_STEADY = 0.05  # a rise under 5 % of the limit is no rise
_STALL_WINDOW = 10.0  # seconds before the kill whose reclaim stalls the verdict sums


def growth(t: list[float], usage: list[int], window: float, final: bool) -> tuple[float | None, float | None]:
    """(bytes per second, seconds covered): usage's change over the WINDOW seconds up to the
    sample that stands for the kill (_kill_point: not one taken after the victim's memory was
    freed; FINAL: the last sample is that one); (None, None) with fewer than two samples a second
    or more apart."""
    if len(t) < 2 or len(usage) < len(t):
        return None, None
    last = _kill_point(len(t), final)
    first = next(i for i, x in enumerate(t) if x >= t[last] - window)
    span = t[last] - t[first]
    if span < 1.0:
        return None, None
    return round((usage[last] - usage[first]) / span, 1), round(span, 3)


def main_curve(report: dict) -> dict | None:
    """The curve that explains the kill: the OOMing memcg's, else the victim's."""
    curves = [c for c in report.get("curves") or () if isinstance(c, dict)]
    for curve in curves:
        if "memcg" in (curve.get("roles") or ()):
            return curve
    return curves[0] if curves else None


@dataclass(frozen=True)
class Analysis:
    verdict: str
    cgroup: str | None = None  # the curve analysed
    limit: int | None = None
    samples: int = 0
    usage: int | None = None  # at the kill (the sample nearest it, or the kernel's figure)
    grew: str | None = None  # "anon" or "file": what rose most before the kill
    grew_from: int | None = None
    grew_to: int | None = None
    grew_seconds: float | None = None
    anon: int | None = None  # at the kill
    file: int | None = None
    file_max: int | None = None  # the most page cache held in the window
    file_max_t: float | None = None  # when (seconds relative to the kill)
    shmem: int | None = None
    swap: int | None = None
    growth_per_s: float | None = None  # over the last minute
    stall_ms: float | None = None  # reclaim stalls summed over the intervals ending in the last 10 s
    stall_seconds: float | None = None  # what those intervals cover

    def to_dict(self) -> dict:
        return asdict(self)


def analyse(report: dict) -> Analysis:
    """The verdict and figures of REPORT (an oom_report record); never raises on a record
    that lacks fields (an older or foreign producer): what is missing is left out."""
    curve = main_curve(report)
    limit = _int(report.get("limit"))
    at_kill = _int(report.get("usage_at_kill"))
    if curve is None or not _points(curve):
        cgroup = curve.get("cgroup") if curve else report.get("memcg") or report.get("cgroup")
        words = f"no samples of {cgroup} were taken before the kill" if cgroup else "the kill names no cgroup"
        if at_kill and limit:
            words += f"; the kernel saw {mib(at_kill)} of the {mib(limit)} limit"
        return Analysis(_global(report, words), cgroup, limit, usage=at_kill)
    t, usage = curve["t"], curve["usage"]
    limit = limit or _int((curve.get("limit") or [None])[-1]) or None
    p = _kill_point(len(t), bool(curve.get("final")))
    if p == len(t) - 1 and curve.get("final"):  # only the sample taken at the report: not how usage got there
        anon, file = _at(curve, "anon", 0), _at(curve, "file", 0)
        words = (f"no samples of {curve.get('cgroup')} were taken before the kill (made less than a sweep "
                 f"before it); at the report usage was {mib(usage[0])}")
        words += f" of the {mib(limit)} limit" if limit else ""
        words += f", anon {mib(anon)}, page cache {mib(file)}" if anon is not None and file is not None else ""
        return Analysis(_global(report, words), curve.get("cgroup"), limit, 1, usage=usage[0], anon=anon, file=file)
    final = usage[p + 1:]  # taken after the kill: higher when the victim's memory was not freed yet
    facts = {"cgroup": curve.get("cgroup"), "limit": limit, "samples": len(t),
             "usage": max(usage[p], at_kill or 0, *final),
             "anon": _at(curve, "anon", p), "file": _at(curve, "file", p), "shmem": _at(curve, "shmem", p),
             "swap": _at(curve, "swap", p), "growth_per_s": curve.get("growth_per_s")}
    parts = [_rise(report, curve, p, limit, facts)]
    parts.append(_cache(curve, p, limit, facts))
    stall = _stalls(curve.get("stalls") or {})
    if stall is not None:
        facts["stall_ms"], facts["stall_seconds"] = stall
        parts.append(f"reclaim stalled {_ms(stall[0])} in the last {stall[1]:.0f} s" if stall[0] else
                     f"no reclaim stall in the last {stall[1]:.0f} s")
    return Analysis(_global(report, "; ".join(p for p in parts if p)), **facts)


def _rise(report: dict, curve: dict, p: int, limit: int | None, facts: dict) -> str:
    """What grew (anon or page cache), from what to what, in how long; and the limit it hit."""
    t = curve["t"]
    tol = (limit or max(curve["usage"])) * 0.01
    rises = []
    for name in ("anon", "file"):
        values = curve.get(name) or []
        if len(values) == len(t):
            s = _rise_start(values, p, tol)
            rises.append((values[p] - values[s], name, values[s], values[p], t[p] - t[s]))
    usage = facts["usage"]
    if limit and (report.get("constraint") == "memcg" or usage >= 0.95 * limit):
        hit = f"hit the {mib(limit)} memcg limit"
    else:
        hit = f"reached {mib(usage)}" + (f", {100 * usage / limit:.0f}% of its {mib(limit)} limit" if limit else "")
    if not rises or max(rises)[0] < _STEADY * (limit or usage or 1):
        span = t[p] - t[0]
        steady = "usage was steady" + (f" over the {span:.0f} s before the kill" if span >= 1 else "")
        return f"{steady} and {hit}"
    _, name, start, end, seconds = max(rises)
    facts.update(grew=name, grew_from=start, grew_to=end, grew_seconds=round(seconds, 3))
    took = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
    return f"{_NAMES[name]} grew {mib(start, bare=True)} → {mib(end)} in {took} s and {hit}"


_NAMES = {"anon": "anon", "file": "page cache"}


def _cache(curve: dict, p: int, limit: int | None, facts: dict) -> str:
    """Page cache (and shmem, and swap) at the kill, and how much more the cache held before."""
    file, shmem, swap = facts["file"], facts["shmem"], facts["swap"]
    words = []
    if file is not None and facts.get("grew") != "file":
        values = curve["file"][:p + 1]
        top = max(range(len(values)), key=values.__getitem__)
        facts.update(file_max=values[top], file_max_t=curve["t"][top])
        words.append(f"page cache was {mib(file)}")
        scale = limit or facts["usage"] or 1
        if values[top] >= 2 * file and values[top] - file >= _STEADY * scale:
            words[-1] += (f", down from {mib(values[top])} {-curve['t'][top]:.0f} s before the kill "
                          "(reclaimed to make room)")
        elif facts["usage"] and file >= 0.25 * facts["usage"]:
            words[-1] += f" ({100 * file / facts['usage']:.0f}% of usage)"
    elif facts.get("grew") == "file" and facts["anon"] is not None:
        words.append(f"anon was {mib(facts['anon'])}")
    if shmem and shmem >= _STEADY * (limit or facts["usage"] or 1):
        words.append(f"shmem (tmpfs) held {mib(shmem)}, which reclaim cannot free without swap")
    if swap:
        words.append(f"swap held {mib(swap)}")
    return "; ".join(words)


def _stalls(stalls: dict) -> tuple[float, float] | None:
    """(ms, seconds covered) of the reclaim stalls of the intervals that end in the last 10 s
    before the kill, and of the one the kill fell in when it was added (add_late_stalls: it
    ends after the kill); None when no memory_pressure record reached the recorder."""
    t, interval, stall = stalls.get("t") or [], stalls.get("interval") or [], stalls.get("stall_ns") or []
    n = min(len(t), len(interval), len(stall))
    if not n:
        return None
    chosen = [i for i in range(n) if -_STALL_WINDOW <= t[i] <= 0.5 or (t[i] > 0 and t[i] - interval[i] < 0)]
    if not chosen:
        return 0.0, _STALL_WINDOW
    covered = -min(t[i] - interval[i] for i in chosen)
    return sum(stall[i] for i in chosen) / 1e6, max(covered, _STALL_WINDOW)


def add_late_stalls(report: dict, pressure: list[dict]) -> dict:
    """REPORT with, in each curve's stalls, the memory_pressure records (of PRESSURE, from the
    same node) of the interval the kill fell in: made after the report, they hold the stalls
    right before the kill. A copy; what is already there is not added twice."""
    kill_time = report.get("kill_time")
    if not isinstance(kill_time, (int, float)) or not pressure:
        return report
    curves = []
    for curve in report.get("curves") or ():
        path, stalls = curve.get("cgroup"), dict(curve.get("stalls") or {})
        late: dict[float, list] = {}
        for rec in pressure:
            if _late(rec, path, kill_time):
                row = late.setdefault(rec["time"], [rec.get("interval") or 0, 0, 0, 0])
                row[1] += rec.get("stall_ns") or 0
                row[2] = max(row[2], rec.get("max_stall_ns") or 0)
                row[3] += sum(v for k, v in rec.items() if k.endswith("_reclaims") and isinstance(v, int))
        known = set(stalls.get("t") or ())
        for stamp, (interval, stall, longest, reclaims) in sorted(late.items()):
            t = round(stamp - kill_time, 3)
            if t in known:
                continue
            for key, value in (("t", t), ("interval", interval), ("stall_ns", stall), ("max_stall_ns", longest),
                               ("reclaims", reclaims)):
                stalls[key] = [*(stalls.get(key) or ()), value]
        curves.append(dict(curve, stalls=stalls))
    return dict(report, curves=curves)


def _late(rec: dict, path: object, kill_time: float) -> bool:
    """A memory_pressure record of PATH (or below) whose interval holds the kill."""
    cgroup, stamp, interval = rec.get("cgroup"), rec.get("time"), rec.get("interval")
    if not (isinstance(path, str) and isinstance(cgroup, str) and isinstance(stamp, (int, float))
            and isinstance(interval, (int, float))):
        return False
    below = cgroup == path or cgroup.startswith(path.rstrip("/") + "/")
    return below and stamp > kill_time >= stamp - interval


def _global(report: dict, words: str) -> str:
    constraint = report.get("constraint")
    if constraint and constraint != "memcg" and not report.get("memcg"):
        return f"a {constraint} OOM (no memcg limit was hit): " + words
    return words


def _points(curve: dict) -> int:
    t, usage = curve.get("t") or [], curve.get("usage") or []
    return min(len(t), len(usage))


def _kill_point(n: int, final: bool) -> int:
    """Of N samples, the one that stands for the moment of the kill: the last one before it, not
    the one taken at the report (FINAL), which may already show the victim's memory freed;
    that one only when it is all there is."""
    return n - 2 if final and n >= 2 else n - 1


def _rise_start(values: list[int], p: int, tol: float) -> int:
    s = p
    while s > 0 and values[s - 1] <= values[s] + tol:
        s -= 1
    return s


def _at(curve: dict, name: str, i: int) -> int | None:
    values = curve.get(name)
    return values[i] if isinstance(values, list) and i < len(values) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mib(size: int | float | None, bare: bool = False) -> str:
    """SIZE in MiB as the verdict writes it: "64 MiB", "1.5 MiB" (BARE: without the unit)."""
    if size is None:
        return "?"
    value = size / MiB
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
    return text if bare else text + " MiB"


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 1 else f"{ms:.2f} ms"
