"""The chart of an `oom_report`: memory over the minutes before the kill (anon and page cache
stacked, usage, the limit), the kill marked, and the reclaim stalls below; the workload's
identity and the verdict in the title. matplotlib (Agg, no display) is imported only here and
only when a chart is drawn: `oomtrace run` and the collector never load it.
"""

from __future__ import annotations

import io
import textwrap

from tracer.postmortem.analysis import Analysis, MiB, analyse, main_curve

FORMATS = ("png", "svg")
WIDTH, HEIGHT, DPI = 10.0, 6.0, 100  # inches and dots per inch: a 1000 × 600 PNG


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def render(report: dict, fmt: str = "png", analysis: Analysis | None = None) -> bytes:
    """REPORT drawn as FMT (png or svg) bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown chart format {fmt!r}; one of {', '.join(FORMATS)}")
    plt = _pyplot()
    analysis = analysis or analyse(report)
    fig, (mem, stall) = plt.subplots(2, 1, figsize=(WIDTH, HEIGHT), dpi=DPI, sharex=True,
                                     gridspec_kw={"height_ratios": (4, 1)})
    try:
        curve = main_curve(report)
        if curve and curve.get("t"):
            _memory(mem, curve)
            _stalls(stall, curve.get("stalls") or {})
        else:
            mem.text(0.5, 0.5, "no samples before the kill", ha="center", va="center", transform=mem.transAxes)
        for ax in (mem, stall):
            ax.axvline(0.0, color="black", linewidth=1.2, linestyle="--")
            ax.grid(True, alpha=0.3)
        mem.annotate("OOM kill", xy=(0.0, 1.0), xycoords=("data", "axes fraction"), xytext=(-4, -12),
                     textcoords="offset points", ha="right", fontsize=9)
        mem.set_ylabel("MiB")
        stall.set_ylabel("reclaim stall (ms)")
        stall.set_xlabel("seconds relative to the kill")
        fig.suptitle(title(report), fontsize=11, x=0.01, ha="left")
        mem.set_title("\n".join(textwrap.wrap(analysis.verdict, 130)), fontsize=9, loc="left")
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format=fmt, dpi=DPI)
        return out.getvalue()
    finally:
        plt.close(fig)


def _memory(ax, curve: dict) -> None:
    t = curve["t"]
    anon = [v / MiB for v in curve.get("anon") or [0] * len(t)]
    file = [v / MiB for v in curve.get("file") or [0] * len(t)]
    ax.stackplot(t, anon, file, labels=("anon", "page cache (file)"), colors=("#d62728", "#1f77b4"), alpha=0.45)
    ax.plot(t, [v / MiB for v in curve["usage"]], color="black", linewidth=1.4, marker=".", markersize=3,
            label="usage")
    limits = [v / MiB if v else None for v in curve.get("limit") or ()]
    if any(limits):
        ax.step(t, limits, where="post", color="#ff7f0e", linewidth=1.6, label="limit")
    swap = curve.get("swap") or []
    if any(swap):
        ax.plot(t, [v / MiB for v in swap], color="#9467bd", linewidth=1, label="swap")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.text(0.99, 0.02, curve.get("cgroup") or "", ha="right", va="bottom", fontsize=7, transform=ax.transAxes)


def _stalls(ax, stalls: dict) -> None:
    t, interval, stall = stalls.get("t") or [], stalls.get("interval") or [], stalls.get("stall_ns") or []
    n = min(len(t), len(interval), len(stall))
    if n:  # a bar per memory_pressure interval, ending where the record was made
        ax.bar([t[i] - interval[i] for i in range(n)], [stall[i] / 1e6 for i in range(n)],
               width=[interval[i] for i in range(n)], align="edge", color="#8c564b", alpha=0.7)
    else:
        ax.text(0.5, 0.5, "no reclaim stalls recorded", ha="center", va="center", fontsize=8, transform=ax.transAxes)


def title(report: dict) -> str:
    """Who was killed, where: pod and container (or the cgroup), the process, the node."""
    pod = report.get("pod") or report.get("memcg_pod")
    container = report.get("container") or report.get("memcg_container")
    words = ["OOM kill"]
    if isinstance(pod, dict):
        words.append(f"{pod.get('namespace')}/{pod.get('name')}")
    if isinstance(container, dict):
        name = (pod or {}).get("container") if isinstance(pod, dict) else None
        words.append(f"container {name or container.get('name') or str(container.get('id', ''))[:12]}")
        if container.get("image"):
            words.append(f"({container['image']})")
    if len(words) == 1:
        words.append(str(report.get("memcg") or report.get("cgroup") or "?"))
    words.append(f"— pid {report.get('pid')} {report.get('comm')}")
    if report.get("node"):
        words.append(f"on {report['node']}")
    return " ".join(words)


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ChartUnavailable("charts need matplotlib: pip install 'oomtrace[report]' "
                               "(or apt install python3-matplotlib)") from e
    matplotlib.use("Agg", force=True)  # no display: a file, on a server too
    import matplotlib.pyplot as plt

    return plt
