"""Bounded work, ledger bookkeeping, failure reporting and redrive keys (fakes only)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from agents.chapter_agent import ChapterAgent
from agents.index_catalog import SingleIndex
from agents.result_agent import ResultAgent, ResultMessage
from agents.retry import Backoff
from prefect_bridge.chunking import ChunkingPolicy
from prefect_bridge.embedding import HashingEmbedder
from prefect_bridge.flow import report_failure
from prefect_bridge.runtime import FlowRuntime, configure
from schemas import ChapterFailed, SourceRef
from schemas.dead_letters import DeadLetter
from tests.fakes import (
    InMemoryDeadLetters,
    InMemoryEventLog,
    InMemoryLedger,
    InMemoryPublisher,
    InMemorySubmitter,
    InMemoryVectorStore,
)

SOURCE = SourceRef(topic="novel-events", partition=1, offset=7)


def chapter_event(chapter: str = "c1", version: int = 1) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "chapter.created",
            "novel_id": "n",
            "chapter_id": chapter,
            "version": version,
            "occurred_at": "2026-11-28T00:00:00Z",
            "title": "t",
            "text": "一句话。",
        }
    ).encode()


def agent(sub: InMemorySubmitter, ledger: InMemoryLedger, bound: int = 2) -> ChapterAgent:
    return ChapterAgent(
        submitter=sub,
        results=InMemoryPublisher(),
        dead_letters=InMemoryDeadLetters(),
        ledger=ledger,
        pipeline_version="pv",
        max_text_bytes=1000,
        max_in_flight=bound,
        backoff=Backoff(initial=0.001),
        capacity_poll_seconds=0.01,
    )


async def test_agent_waits_while_the_bound_is_reached_and_resumes_when_runs_finish() -> None:
    sub = InMemorySubmitter(running=[2, 2, 2, 1])
    ledger = InMemoryLedger()
    task = asyncio.create_task(agent(sub, ledger).handle(b"n", chapter_event(), SOURCE))
    await asyncio.sleep(0.005)
    assert sub.keys == []  # paused: 2 runs in flight, bound 2
    assert await asyncio.wait_for(task, 2) == "run-1"
    assert len(sub.keys) == 1


async def test_budget_is_spent_locally_and_refreshed_only_when_used_up() -> None:
    sub = InMemorySubmitter(running=[0])
    calls = 0
    original = sub.in_flight

    async def counting() -> int:
        nonlocal calls
        calls += 1
        return await original()

    sub.in_flight = counting  # type: ignore[method-assign]
    chapter_agent = agent(sub, InMemoryLedger(), bound=3)
    for i in range(6):
        await chapter_agent.handle(b"n", chapter_event(f"c{i}"), SOURCE)
    assert len(sub.keys) == 6
    assert calls == 2  # one refresh per 3 submissions


async def test_submission_is_recorded_as_pending_in_the_ledger() -> None:
    ledger = InMemoryLedger()
    await agent(InMemorySubmitter(running=[0]), ledger).handle(b"n", chapter_event("c9", 4), SOURCE)
    row = await ledger.chapter("n", "c9")
    assert row is not None
    assert (row.status, row.latest_version, row.flow_run_id) == ("pending", 4, "run-1")


async def test_a_redriven_event_gets_a_new_idempotency_key() -> None:
    sub = InMemorySubmitter(running=[0])
    chapter_agent = agent(sub, InMemoryLedger())
    value = chapter_event()
    await chapter_agent.handle(b"n", value, SOURCE)
    await chapter_agent.handle(b"n", value, SOURCE)
    await chapter_agent.handle(b"n", value, SOURCE, redrive=1)
    assert sub.keys[0] == sub.keys[1]
    assert sub.keys[2] == sub.keys[0] + ":r1"


async def test_result_agent_records_a_failed_chapter_without_touching_the_index() -> None:
    ledger, store = InMemoryLedger(), InMemoryVectorStore()
    sink = ResultAgent(
        catalog=SingleIndex(store, ledger),
        dead_letters=InMemoryDeadLetters(),
        backoff=Backoff(initial=0.001),
    )
    failed = ChapterFailed(
        event_id=uuid.uuid4(),
        novel_id="n",
        chapter_id="c",
        version=2,
        flow_run_id="r2",
        reason="Failed: boom",
    )
    applied = await sink.handle_batch(
        [ResultMessage(b"n", failed.model_dump_json().encode(), SOURCE)]
    )
    assert applied == 0
    assert store.flushes == 0
    row = await ledger.chapter("n", "c")
    assert row is not None and (row.status, row.error) == ("failed", "Failed: boom")


async def test_flow_failure_hook_publishes_chapter_failed_and_a_retriable_dead_letter() -> None:
    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    configure(
        lambda: FlowRuntime(HashingEmbedder(), publisher, ChunkingPolicy(), 10_000, events=log)
    )
    event = json.loads(chapter_event("c5", 3))
    params = log.flow_params(event)
    run = SimpleNamespace(id=uuid.uuid4(), parameters=params)
    state = SimpleNamespace(
        type=SimpleNamespace(value="FAILED"), message="embed exploded", name="Failed"
    )
    await report_failure(None, run, state)
    [result] = publisher.published
    assert isinstance(result, ChapterFailed)
    assert (result.chapter_id, result.version, result.flow_run_id) == ("c5", 3, str(run.id))
    assert "embed exploded" in result.reason
    [(key, value, headers)] = publisher.dead_letters
    assert key == b"n"
    assert json.loads(value) == event
    letter = DeadLetter.from_headers(headers)
    assert letter.retriable and letter.error_class == "FlowRunFailed"
    assert letter.source == SourceRef.model_validate(params["source"])
    assert letter.flow_run_id == str(run.id)
    [failure] = publisher.failures
    assert failure.event_type == "chapter.processing_failed"
    assert (failure.novel_id, failure.chapter_id, failure.version) == ("n", "c5", 3)
    assert failure.source_event_id == result.event_id
    assert failure.flow_run_id == str(run.id) and "embed exploded" in failure.reason


async def test_flow_failure_hook_without_the_event_in_the_log_still_reports_it() -> None:
    """Retention deleted the event: the chapter is marked failed, nothing can be parked."""
    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    configure(
        lambda: FlowRuntime(HashingEmbedder(), publisher, ChunkingPolicy(), 10_000, events=log)
    )
    params = log.flow_params(json.loads(chapter_event("c5", 3)))
    log.messages.clear()  # gone
    run = SimpleNamespace(id=uuid.uuid4(), parameters=params)
    state = SimpleNamespace(type=SimpleNamespace(value="FAILED"), message="x", name="Failed")
    await report_failure(None, run, state)
    [failed] = publisher.published
    assert isinstance(failed, ChapterFailed) and failed.version == 3
    assert publisher.dead_letters == []


def test_orphan_rules() -> None:
    from datetime import timedelta

    from prefect_bridge.recovery import MAX_CRASH_ATTEMPTS, is_orphan

    now = datetime.now(UTC)
    grace = timedelta(seconds=60)
    alive = {111}.__contains__
    # A bare pid names no host (Prefect's process worker): left to the heartbeat automation.
    assert not is_orphan("RUNNING", "222", now, now, alive, grace)
    assert not is_orphan("RUNNING", "111", now, now, alive, grace)
    assert is_orphan("RUNNING", "host:222", now, now, alive, grace, host="host")  # gone here
    assert not is_orphan("RUNNING", "other:222", now, now, alive, grace, host="host")
    assert not is_orphan("RUNNING", None, now - 2 * grace, now, alive, grace)
    assert is_orphan("PENDING", None, now - 2 * grace, now, alive, grace)  # claimed, never ran
    assert not is_orphan("PENDING", None, now, now, alive, grace)
    assert is_orphan("CRASHED", None, now, now, alive, grace, run_count=1)
    assert not is_orphan("CRASHED", None, now, now, alive, grace, run_count=MAX_CRASH_ATTEMPTS)


async def test_a_crash_is_left_to_the_watchdog_not_reported_by_the_flow() -> None:
    """A run killed with its process never runs a hook, so crashes are reported by the
    runners' watchdog only (``recover_orphans``): a hook reporting too would double it."""
    from prefect_bridge.flow import novel_processing

    assert novel_processing.on_crashed_hooks == []
    assert novel_processing.on_failure_hooks == [report_failure]


async def test_the_report_of_a_legacy_run_names_its_chapter() -> None:
    """Runs submitted before the text left the parameters carry the event itself."""
    from prefect_bridge.failure_report import report_run_failure, run_identity

    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    event = json.loads(chapter_event("c7", 4))
    params = {**log.flow_params(event), "redrive": 2}
    legacy = {"event": event, "source": params["source"], "redrive": 2}
    assert run_identity(legacy) == run_identity(params) is not None
    assert run_identity({"event": {"event_id": "x"}}) is None
    await report_run_failure(publisher, log, legacy, "CRASHED: killed", "run-1")
    [failed] = publisher.published
    assert isinstance(failed, ChapterFailed)
    assert (failed.chapter_id, failed.version, failed.flow_run_id) == ("c7", 4, "run-1")
    [(_, value, headers)] = publisher.dead_letters
    assert json.loads(value)["event_id"] == event["event_id"]
    letter = DeadLetter.from_headers(headers)
    assert letter.retriable and letter.redrive == 2 and letter.flow_run_id == "run-1"


async def test_a_redriven_invalid_event_keeps_its_redrive_count_in_the_dlq() -> None:
    from schemas.dead_letters import DeadLetter, error_headers

    letters = InMemoryDeadLetters()
    chapter_agent = agent(InMemorySubmitter(running=[0]), InMemoryLedger())
    chapter_agent.dead_letters = letters
    await chapter_agent.handle(b"n", b"not json", SOURCE, redrive=2)
    await chapter_agent.handle(b"n", b"not json", SOURCE)
    assert [i.redrive for i in letters.items] == [2, 0]
    for item in letters.items:
        headers = error_headers(item.source, item.error, item.redrive)
        assert DeadLetter.from_headers(headers).redrive == item.redrive
