"""Host-aware orphan recovery: a pid is judged only on its own host."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType

from prefect_bridge import warm_runner
from prefect_bridge.recovery import (
    MAX_CRASH_ATTEMPTS,
    Owner,
    is_orphan,
    orphan_reason,
    parse_owner,
    recover_orphans,
    this_host,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
GRACE = timedelta(seconds=60)
LONG_AGO = NOW - 2 * GRACE
ALIVE = {111}.__contains__
HERE = "node-a"


def no_such_pid() -> int:
    """A pid no process can have on this machine."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**22 + 1


def orphan(state: str, owner: str | None, since: datetime | None = NOW, run_count: int = 0) -> bool:
    return is_orphan(state, owner, since, NOW, ALIVE, GRACE, run_count, host=HERE)


def test_owners_parse_with_and_without_a_host() -> None:
    assert parse_owner("node-a:42") == Owner("node-a", 42)
    assert parse_owner("fe80::1:42") == Owner("fe80::1", 42)
    assert parse_owner("42") == Owner(None, 42)
    assert parse_owner(":42") == Owner(None, 42)
    assert parse_owner(None) is None
    assert parse_owner("") is None
    assert parse_owner("node-a:") is None
    assert parse_owner("node-a:x1") is None


def test_a_run_of_this_host_is_judged_by_its_pid() -> None:
    assert orphan("RUNNING", f"{HERE}:222")  # its process is gone
    assert not orphan("RUNNING", f"{HERE}:111")
    assert orphan("PENDING", f"{HERE}:222")
    assert not orphan("PENDING", f"{HERE}:111", LONG_AGO)  # claimed by a live process here


def test_a_running_run_of_another_host_is_never_judged_by_pid() -> None:
    assert not orphan("RUNNING", "node-b:222")
    assert not orphan("RUNNING", "node-b:222", LONG_AGO)  # heartbeats decide, not us


def test_a_bare_pid_has_no_known_host_and_is_not_judged_by_pid() -> None:
    # Prefect 3.9's process worker records "<pid>" alone: it may be another container's.
    assert not orphan("RUNNING", "222")
    assert not orphan("RUNNING", "222", LONG_AGO)


def test_a_run_claimed_elsewhere_that_never_started_is_orphaned_after_the_grace() -> None:
    for owner in ("node-b:111", "node-b:222", "222", None):
        assert not orphan("PENDING", owner, NOW - GRACE / 2), owner
        assert orphan("PENDING", owner, LONG_AGO), owner
    assert not orphan("PENDING", None, None)
    reason = orphan_reason("PENDING", "node-b:7", LONG_AGO, NOW, ALIVE, GRACE, host=HERE)
    assert reason == "claimed by node-b:7 and pending for 120s"


def test_a_crash_is_rescheduled_before_the_last_attempt_wherever_it_ran() -> None:
    for owner in (f"{HERE}:111", "node-b:111", "111", None):
        assert orphan("CRASHED", owner, run_count=1)
        assert not orphan("CRASHED", owner, run_count=MAX_CRASH_ATTEMPTS)


def test_this_host_is_the_configured_identity_or_the_host_name() -> None:
    assert this_host("node-7") == "node-7"
    assert this_host(None) == this_host("") == socket.gethostname()
    here = f"{socket.gethostname()}:{no_such_pid()}"
    now = datetime.now(UTC)
    assert is_orphan("RUNNING", here, now, now, ALIVE, GRACE)  # default: the host name


class FakePrefect:
    """read_flow_runs / set_flow_run_state of a PrefectClient."""

    def __init__(self, runs: list[Any]) -> None:
        self.runs = runs
        self.rescheduled: list[tuple[Any, str, bool]] = []

    async def read_flow_runs(self, *, limit: int, offset: int = 0, **_: Any) -> list[Any]:
        return self.runs[offset : offset + limit]

    async def set_flow_run_state(self, run_id: Any, state: Any, force: bool = False) -> None:
        self.rescheduled.append((run_id, state.name, force))

    async def update_flow_run(self, run_id: Any, tags: list[str]) -> None:
        next(r for r in self.runs if r.id == run_id).tags = tags

    async def read_flow_run_states(self, run_id: Any) -> list[Any]:
        run = next(r for r in self.runs if r.id == run_id)
        return [SimpleNamespace(type=StateType[t]) for t in getattr(run, "history", [])]


def flow_run(name: str, owner: str | None, state: str = "RUNNING") -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid.uuid4(),
        name=name,
        infrastructure_pid=owner,
        tags=[],
        run_count=1,
        state=SimpleNamespace(type=SimpleNamespace(value=state), timestamp=datetime.now(UTC)),
    )


async def test_recovery_leaves_another_hosts_run_alone_and_reschedules_its_own() -> None:
    dead = no_such_pid()  # exists on no host's behalf here: the real pid_alive says gone
    theirs = flow_run("theirs", f"node-b:{dead}")
    ours = flow_run("ours", f"node-a:{dead}")
    bare = flow_run("bare", str(dead))
    prefect = FakePrefect([theirs, ours, bare])
    recovered = await recover_orphans(prefect, uuid.uuid4(), host="node-a")  # type: ignore[arg-type]
    assert recovered == ["ours"]
    assert prefect.rescheduled == [(ours.id, "AwaitingRetry", True)]


async def test_recovery_by_default_judges_the_runs_of_this_host_name() -> None:
    dead = no_such_pid()
    ours = flow_run("ours", f"{socket.gethostname()}:{dead}")
    live = flow_run("live", f"{socket.gethostname()}:{os.getpid()}")
    theirs = flow_run("theirs", f"not-{socket.gethostname()}:{dead}")
    prefect = FakePrefect([ours, live, theirs])
    assert await recover_orphans(prefect, uuid.uuid4()) == ["ours"]  # type: ignore[arg-type]


class ClaimingPrefect:
    def __init__(self) -> None:
        self.owners: list[tuple[Any, str]] = []

    async def update_flow_run(self, run_id: Any, infrastructure_pid: str) -> None:
        self.owners.append((run_id, infrastructure_pid))

    async def read_flow_run(self, run_id: Any) -> Any:
        return SimpleNamespace(id=run_id)


@pytest.mark.parametrize("host", ["node-7", None])
async def test_the_warm_runner_records_the_owner_the_watchdog_of_its_host_judges(
    monkeypatch: pytest.MonkeyPatch, host: str | None
) -> None:
    async def pending(*_: Any, **__: Any) -> Any:
        return SimpleNamespace(is_pending=lambda: True)

    monkeypatch.setattr(warm_runner, "propose_state", pending)
    prefect = ClaimingPrefect()
    runner = warm_runner.WarmRunner(prefect, None, uuid.uuid4(), limit=1, host=host)  # type: ignore[arg-type]
    run_id = uuid.uuid4()
    await runner._claim(SimpleNamespace(id=run_id))
    [(claimed, owner)] = prefect.owners
    assert claimed == run_id
    assert owner == f"{this_host(host)}:{os.getpid()}" == warm_runner.owner_id(host)
    now = datetime.now(UTC)
    # alive on its own host; never judged by pid from another one
    assert not is_orphan("RUNNING", owner, now, now, lambda _: False, GRACE, host="elsewhere")
    assert is_orphan("RUNNING", owner, now, now, lambda _: False, GRACE, host=this_host(host))
    assert not is_orphan("RUNNING", owner, now, now, lambda p: p == os.getpid(), GRACE, host=host)


async def test_a_run_that_crashes_before_its_body_starts_is_not_rescheduled_forever() -> None:
    """Found by the chaos run (seed 12): each attempt crashed before the flow body ran, so
    run_count stayed 0 and the watchdog rescheduled it in a loop, never reporting it."""
    early = flow_run("early", None, state="CRASHED")
    early.run_count = 0
    early.history = ["SCHEDULED", "PENDING", "CRASHED", "SCHEDULED", "PENDING", "CRASHED"]
    prefect = FakePrefect([early])
    assert await recover_orphans(prefect, uuid.uuid4(), host="node-a") == ["early"]  # type: ignore[arg-type]
    early.history += ["PENDING", "CRASHED"]  # the third crash is final
    prefect.rescheduled.clear()
    assert await recover_orphans(prefect, uuid.uuid4(), host="node-a") == []  # type: ignore[arg-type]


def crashed_for_good(name: str, crashes: int) -> SimpleNamespace:
    run = flow_run(name, None, state="CRASHED")
    run.run_count = 0  # crashed before the body each time (or killed with its process)
    run.history = ["SCHEDULED", "PENDING", "CRASHED"] * crashes
    run.parameters = {"event_id": "e", "novel_id": "n", "chapter_id": name, "version": 1}
    run.state.message = "Run process killed"
    return run


async def test_the_last_crash_is_reported_once_and_the_run_leaves_the_watched_states() -> None:
    """A run killed on its last attempt never runs its own hooks: the watchdog reports it
    (chapter.failed, the DLQ) and sets it Failed, so it is neither stuck pending in the
    ledger nor read again by every later round."""
    reports: list[tuple[dict[str, Any], str, str]] = []

    async def report(params: dict[str, Any], reason: str, run_id: str) -> None:
        reports.append((params, reason, run_id))

    early, last = crashed_for_good("early", 1), crashed_for_good("last", MAX_CRASH_ATTEMPTS)
    prefect = FakePrefect([early, last])
    acted = await recover_orphans(prefect, uuid.uuid4(), host=HERE, report=report)  # type: ignore[arg-type]
    assert acted == ["early", "last"]
    [(params, reason, run_id)] = reports
    assert params["chapter_id"] == "last" and run_id == str(last.id)
    assert f"all {MAX_CRASH_ATTEMPTS} attempts" in reason and "Run process killed" in reason
    assert prefect.rescheduled == [(early.id, "AwaitingRetry", True), (last.id, "Failed", True)]


async def test_a_report_that_fails_leaves_the_run_crashed_and_the_others_handled() -> None:
    """Kafka away: the finally crashed run stays CRASHED (reported by a later round), and
    the rescheduling of other orphans, which needs no Kafka, goes on."""

    async def unreachable(params: dict[str, Any], reason: str, run_id: str) -> None:
        raise ConnectionError("Kafka is away")

    last = crashed_for_good("last", MAX_CRASH_ATTEMPTS)
    early = crashed_for_good("early", 1)
    prefect = FakePrefect([last, early])
    acted = await recover_orphans(prefect, uuid.uuid4(), host=HERE, report=unreachable)  # type: ignore[arg-type]
    assert acted == ["early"]
    assert prefect.rescheduled == [(early.id, "AwaitingRetry", True)]


async def test_every_page_of_runs_is_read() -> None:
    """Runs past the first page were never seen before."""
    from prefect_bridge.run_pages import PAGE_SIZE

    dead = no_such_pid()
    runs = [flow_run(f"r{i}", f"{HERE}:{dead}") for i in range(PAGE_SIZE + 3)]
    prefect = FakePrefect(runs)
    acted = await recover_orphans(prefect, uuid.uuid4(), host=HERE)  # type: ignore[arg-type]
    assert len(acted) == PAGE_SIZE + 3
