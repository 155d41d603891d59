"""Issue 19, hole 2: a service away is "try later", and a failure is reported until it is.

Pure decisions (what is tried later, and when; which failed runs the watchdog reports)
and the watchdog's round on a fake Prefect client.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prefect_bridge.recovery import MAX_CRASH_ATTEMPTS, recover_orphans
from prefect_bridge.try_later import (
    FIRST_DELAY_SECONDS,
    MAX_DELAY_SECONDS,
    MAX_SERVICE_ATTEMPTS,
    awaiting_service,
    try_later_delay,
)
from prefect_bridge.unreported import (
    REPORT_GRACE,
    REPORT_WINDOW,
    REPORTED_TAG,
    needs_report,
    report_unreported,
)
from schemas import (
    EventUnavailable,
    PublishError,
    ResultTooLarge,
    SchemaViolation,
    ServiceUnavailable,
    VectorStoreError,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_only_errors_that_say_they_are_retriable_are_tried_later() -> None:
    for away in (ServiceUnavailable("kafka"), PublishError("x"), VectorStoreError("milvus")):
        assert try_later_delay(away, 1) == FIRST_DELAY_SECONDS, away
    for permanent in (EventUnavailable("gone"), SchemaViolation("bad"), ResultTooLarge("big")):
        assert try_later_delay(permanent, 1) is None, permanent
    # not one of ours: its message may say "connection", the decision does not read it
    assert try_later_delay(ConnectionError("connection refused"), 1) is None
    assert try_later_delay(TimeoutError("timed out"), 1) is None


def test_the_delay_doubles_up_to_its_cap_and_the_last_attempt_fails() -> None:
    away = ServiceUnavailable("kafka")
    delays = [try_later_delay(away, n) for n in range(1, MAX_SERVICE_ATTEMPTS)]
    assert delays[:3] == [FIRST_DELAY_SECONDS, 2 * FIRST_DELAY_SECONDS, 4 * FIRST_DELAY_SECONDS]
    assert all(d is not None and d <= MAX_DELAY_SECONDS for d in delays)
    assert delays[-1] == MAX_DELAY_SECONDS
    assert try_later_delay(away, MAX_SERVICE_ATTEMPTS) is None
    total = sum(d for d in delays if d is not None)
    assert 20 * 60 < total < 60 * 60  # outlasts a broker restart by far, not forever


def test_a_run_tried_later_is_put_back_in_line_with_the_reason() -> None:
    state = awaiting_service(ServiceUnavailable("cannot read the input event"), 2, NOW)
    assert state is not None and state.is_scheduled() and state.name == "AwaitingRetry"
    assert state.state_details.scheduled_time == NOW + timedelta(seconds=2 * FIRST_DELAY_SECONDS)
    assert "ServiceUnavailable" in (state.message or "")
    assert awaiting_service(SchemaViolation("bad"), 1, NOW) is None


def test_the_watchdog_reports_unmarked_failures_after_the_hooks_grace() -> None:
    failed_at = NOW - REPORT_GRACE - timedelta(seconds=1)
    assert needs_report("FAILED", [], failed_at, NOW)
    assert needs_report("FAILED", None, failed_at, NOW)
    assert not needs_report("FAILED", [REPORTED_TAG], failed_at, NOW)  # marked
    assert not needs_report("FAILED", [], NOW - REPORT_GRACE / 2, NOW)  # its hook may be on it
    assert not needs_report("FAILED", [], NOW - REPORT_WINDOW - timedelta(1), NOW)  # too old
    assert not needs_report("FAILED", [], None, NOW)
    for other in ("COMPLETED", "CRASHED", "SCHEDULED", "RUNNING", "CANCELLED"):
        assert not needs_report(other, [], failed_at, NOW), other


class FakePrefect:
    """read_flow_runs / update_flow_run / set_flow_run_state of a PrefectClient."""

    def __init__(self, runs: list[Any]) -> None:
        self.runs = runs
        self.states: list[tuple[Any, str]] = []

    async def read_flow_runs(self, *, limit: int, offset: int = 0, **_: Any) -> list[Any]:
        return self.runs[offset : offset + limit]

    async def update_flow_run(self, run_id: Any, tags: list[str]) -> None:
        next(r for r in self.runs if r.id == run_id).tags = tags

    async def set_flow_run_state(self, run_id: Any, state: Any, force: bool = False) -> None:
        self.states.append((run_id, state.name))

    async def read_flow_run_states(self, run_id: Any) -> list[Any]:
        return []


def run(name: str, state: str, tags: list[str], ago: timedelta, run_count: int = 1) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(),
        name=name,
        tags=tags,
        infrastructure_pid=None,
        run_count=run_count,
        parameters={"event_id": "e", "novel_id": "n", "chapter_id": name, "version": 1},
        state=SimpleNamespace(
            type=SimpleNamespace(value=state),
            name=state.title(),
            message=f"{name} went wrong",
            timestamp=datetime.now(UTC) - ago,
        ),
    )


async def test_an_unreported_failure_is_reported_until_the_report_is_out_then_marked() -> None:
    late = REPORT_GRACE + timedelta(seconds=5)
    lost = run("lost", "FAILED", ["novel:n"], late)  # its hook could not publish
    hooked = run("hooked", "FAILED", ["novel:n", REPORTED_TAG], late)
    fresh = run("fresh", "FAILED", [], timedelta(seconds=1))
    prefect = FakePrefect([lost, hooked, fresh])
    reports: list[str] = []
    kafka_up = False

    async def report(params: dict[str, Any], reason: str, run_id: str) -> None:
        if not kafka_up:
            raise PublishError("cannot connect to Kafka")
        reports.append(run_id)
        assert params["chapter_id"] == "lost" and "lost went wrong" in reason

    assert await report_unreported(prefect, uuid.uuid4(), report) == []  # type: ignore[arg-type]
    assert lost.tags == ["novel:n"]  # not marked: tried again next round
    kafka_up = True
    assert await report_unreported(prefect, uuid.uuid4(), report) == ["lost"]  # type: ignore[arg-type]
    assert lost.tags == ["novel:n", REPORTED_TAG] and reports == [str(lost.id)]
    assert await report_unreported(prefect, uuid.uuid4(), report) == []  # type: ignore[arg-type]
    assert reports == [str(lost.id)]


async def test_the_last_crash_is_marked_reported_so_its_failure_is_not_reported_again() -> None:
    last = run("last", "CRASHED", [], timedelta(0), run_count=MAX_CRASH_ATTEMPTS)
    prefect = FakePrefect([last])
    reports: list[str] = []

    async def report(params: dict[str, Any], reason: str, run_id: str) -> None:
        reports.append(run_id)

    await recover_orphans(prefect, uuid.uuid4(), host="node-a", report=report)  # type: ignore[arg-type]
    assert reports == [str(last.id)] and REPORTED_TAG in last.tags
    assert prefect.states == [(last.id, "Failed")]
    # Prefect failed the Failed state once: the run stays CRASHED, marked; not reported twice
    await recover_orphans(prefect, uuid.uuid4(), host="node-a", report=report)  # type: ignore[arg-type]
    assert reports == [str(last.id)]
    assert prefect.states == [(last.id, "Failed"), (last.id, "Failed")]
    last.state.type.value = "FAILED"
    last.state.timestamp = datetime.now(UTC) - 2 * REPORT_GRACE
    assert await report_unreported(prefect, uuid.uuid4(), report) == []  # type: ignore[arg-type]
