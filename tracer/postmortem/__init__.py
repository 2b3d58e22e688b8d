"""The OOM post-mortem: a flight recorder of every memory cgroup's last minutes (recorder.py,
cgroup_files.py) that turns each oom_kill into an oom_report record, and what reads those
records back: the verdict (analysis.py), the chart (chart.py) and the search (select.py), used by
`oomtrace report` and the collector's web page. docs/postmortem.md."""

from tracer.postmortem.recorder import FlightRecorder, RecorderConfig

__all__ = ["FlightRecorder", "RecorderConfig"]
