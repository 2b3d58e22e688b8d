"""The CLI's own behaviour, without the kernel: exit status, messages, lost records."""

from __future__ import annotations

from click.testing import CliRunner

from tests.kernel import CollectingSink
from tracer.cli import main
from tracer.errors import ProbeError
from tracer.events.engine import Engine


def test_a_probe_failure_exits_1_with_one_clear_line(monkeypatch, tmp_path):
    def fail(self):
        raise ProbeError("cannot attach raw tracepoint oom:mark_victim: no such tracepoint")

    monkeypatch.setattr(Engine, "start", fail)
    result = CliRunner().invoke(main, ["run", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: cannot attach raw tracepoint oom:mark_victim: no such tracepoint"


def test_unknown_type_is_a_usage_error():
    result = CliRunner().invoke(main, ["run", "--type", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


def test_lost_samples_become_a_record_with_a_running_total():
    sink = CollectingSink()
    engine = Engine(sink)
    engine._on_lost(5)
    engine._on_lost(2)
    engine._flush_lost()
    engine._on_lost(1)
    engine._flush_lost()
    engine._flush_lost()  # nothing new: no record
    lost = sink.of_type("lost")
    assert [(r["count"], r["total"]) for r in lost] == [(7, 7), (1, 8)]
    assert engine.stats.lost == 8
