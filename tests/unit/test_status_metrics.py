"""``scribe exporter``: a status report becomes gauges, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest

from streams.commands.status_metrics import StatusGauges

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "kafka": {
            "partitions": [
                {"topic": "novel-events", "partition": 0, "lag": 3},
                {"topic": "novel-events", "partition": 1, "lag": 0},
            ],
            "dlq_size": 2,
            "results_waiting": [{"oldest_at": (NOW - timedelta(seconds=40)).isoformat()}],
        },
        "prefect": {"runs": {"RUNNING": 1, "COMPLETED": 9}, "failed_last_hour": 1},
        "ledger": {
            "counts": {"indexed": 8, "pending": 2},
            "stale_pending": 1,
            "oldest_pending": {"since": (NOW - timedelta(seconds=1000)).isoformat()},
        },
        "index": {"rows": 70, "expected_rows": 80},
    }
    return report | overrides


def _value(gauges: StatusGauges, name: str, **labels: str) -> float | None:
    return gauges.registry.get_sample_value(name, labels)


def test_every_section_of_a_report_becomes_its_gauges() -> None:
    gauges = StatusGauges()
    gauges.update(_report(), 3, NOW)
    for section in ("kafka", "prefect", "ledger", "index"):
        assert _value(gauges, "scribe_status_up", section=section) == 1
    assert _value(gauges, "scribe_group_lag", topic="novel-events", partition="0") == 3
    assert _value(gauges, "scribe_dlq_messages") == 2
    assert _value(gauges, "scribe_results_oldest_wait_seconds") == 40
    assert _value(gauges, "scribe_flow_runs", state="COMPLETED") == 9
    assert _value(gauges, "scribe_flow_runs_failed_last_hour") == 1
    assert _value(gauges, "scribe_chapters", status="pending") == 2
    assert _value(gauges, "scribe_chapters_stale_pending") == 1
    assert _value(gauges, "scribe_oldest_pending_age_seconds") == 1000
    assert _value(gauges, "scribe_index_rows") == 70
    assert _value(gauges, "scribe_index_expected_rows") == 80
    assert _value(gauges, "scribe_status_findings") == 3
    assert _value(gauges, "scribe_exporter_last_success_timestamp_seconds") == NOW.timestamp()
    assert gauges.fresh(60)


def test_a_section_that_could_not_be_read_says_so_and_keeps_its_last_values() -> None:
    gauges = StatusGauges()
    gauges.update(_report(), 0, NOW)
    gauges.update(_report(index={"error": "Milvus away"}, prefect=None), 1, NOW)
    assert _value(gauges, "scribe_status_up", section="index") == 0
    assert _value(gauges, "scribe_status_up", section="prefect") == 0
    assert _value(gauges, "scribe_index_rows") == 70
    assert _value(gauges, "scribe_status_up", section="kafka") == 1


def test_a_state_no_run_is_in_any_more_is_not_reported_at_its_last_count() -> None:
    gauges = StatusGauges()
    gauges.update(_report(), 0, NOW)
    later = _report(prefect={"runs": {"COMPLETED": 10}, "failed_last_hour": 0})
    later["ledger"] = {"counts": {"indexed": 10}, "stale_pending": 0, "oldest_pending": None}
    gauges.update(later, 0, NOW)
    assert _value(gauges, "scribe_flow_runs", state="RUNNING") is None
    assert _value(gauges, "scribe_chapters", status="pending") is None
    assert _value(gauges, "scribe_oldest_pending_age_seconds") == 0


def test_an_exporter_that_never_read_a_report_is_not_healthy() -> None:
    gauges = StatusGauges()
    assert not gauges.fresh(60)
    assert b"scribe_status_findings" in generate_latest(gauges.registry)
