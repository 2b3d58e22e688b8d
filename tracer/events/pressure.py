"""Memory-pressure summaries from the in-kernel reclaim totals.

The kernel keeps cumulative (count, stall, reclaimed) per (cgroup, reclaim kind) and the
longest stall of the current epoch; each interval this turns the growth since the last read
into one record per cgroup that stalled, then starts a new epoch.
"""

from __future__ import annotations

from collections.abc import Iterable

from tracer.kernel.cgroupfs import CgroupResolver


class PressureTracker:
    def __init__(self, resolver: CgroupResolver, hierarchy: int, kinds: dict[int, str]) -> None:
        self.resolver = resolver
        self.hierarchy = hierarchy
        self.kinds = kinds
        self._last: dict[tuple[int, int], tuple[int, int, int]] = {}

    def records(self, items: Iterable[tuple[object, object]], epoch: int,
                interval: float, now: float) -> list[dict]:
        """Records for the cgroups whose reclaim totals grew since the previous call.

        EPOCH is the epoch that just ended: only its entries carry a valid max stall.
        """
        by_cgroup: dict[int, dict] = {}
        for key, value in items:
            k = (key.cgroup_id, key.kind)
            total = (value.count, value.stall_ns, value.reclaimed_pages)
            before = self._last.get(k, (0, 0, 0))
            self._last[k] = total
            count, stall, reclaimed = (a - b for a, b in zip(total, before, strict=True))
            if count <= 0:
                continue
            rec = by_cgroup.setdefault(key.cgroup_id, self._empty(key.cgroup_id, interval, now))
            kind = self.kinds.get(key.kind, str(key.kind))
            rec[f"{kind}_reclaims"] += count
            rec["stall_ns"] += stall
            rec["reclaimed_pages"] += reclaimed
            if value.epoch == epoch:
                rec["max_stall_ns"] = max(rec["max_stall_ns"], value.max_stall_ns)
        return list(by_cgroup.values())

    def _empty(self, cgroup_id: int, interval: float, now: float) -> dict:
        rec = {"type": "memory_pressure", "time": round(now, 6), "interval": interval,
               "cgroup": self.resolver.path(self.hierarchy, cgroup_id), "cgroup_id": cgroup_id}
        rec.update({f"{kind}_reclaims": 0 for kind in self.kinds.values()})
        rec.update(stall_ns=0, max_stall_ns=0, reclaimed_pages=0)
        return rec
