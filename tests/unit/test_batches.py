"""Replays in batch runs (issue 22): how writes are grouped, how the chapter agent submits
and records them, and how a batch run treats each of its chapters (no Prefect here; the
flow's batch run on Prefect's engine is in test_flow_runs.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agents.batches import BATCH_TAG, Member, plan_batches
from agents.chapter_agent import ChapterAgent
from agents.decisions import SubmitFlowRun
from prefect_bridge.batch import batch_summary, run_batch
from schemas import (
    ChapterRemoved,
    PublishError,
    SchemaViolation,
    ServiceUnavailable,
    SourceRef,
    Target,
)
from tests.fakes import InMemoryDeadLetters, InMemoryLedger, InMemoryPublisher, InMemorySubmitter
from tests.unit.test_agents import FAST, event_bytes


def member(chapter: str, partition: int = 0, size: int = 10, novel: str = "n") -> Member:
    run = SubmitFlowRun(
        name=f"{novel}/{chapter}@v1",
        idempotency_key=f"{novel}-{chapter}:pv",
        tags=[f"novel:{novel}", f"chapter:{chapter}", "chapter.created", "rebuild:chunks__r"],
        parameters={"novel_id": novel, "chapter_id": chapter, "version": 1},
    )
    return Member(run, partition, size)


def test_batches_hold_one_partition_each_in_order_and_within_both_bounds() -> None:
    members = [member(f"c{i}", partition=i % 2) for i in range(7)]
    members.append(member("big", partition=0, size=95))
    batches = plan_batches(members, "rebuild-1", max_chapters=2, max_bytes=100)
    chapters = [[p["chapter_id"] for p in b.parameters["batch"]] for b in batches]
    assert chapters == [["c0", "c2"], ["c4", "c6"], ["big"], ["c1", "c3"], ["c5"]]
    first = batches[0]
    assert first.name == "rebuild-1/p0/1 (2 chapters: n/c0@v1 .. n/c2@v1)"
    assert first.tags == [BATCH_TAG, "batch:rebuild-1", "novel:n", "rebuild:chunks__r"]
    assert [m.name for m in first.members] == ["n/c0@v1", "n/c2@v1"]


def test_the_same_batch_has_the_same_key_and_another_batch_another() -> None:
    one = plan_batches([member("a"), member("b")], "x", 50, 10_000)
    again = plan_batches([member("a"), member("b")], "y", 50, 10_000)
    other = plan_batches([member("a"), member("c")], "x", 50, 10_000)
    assert one[0].idempotency_key == again[0].idempotency_key != other[0].idempotency_key


def test_a_batch_holds_at_least_one_chapter() -> None:
    with pytest.raises(ValueError):
        plan_batches([member("a")], "x", 0, 10)
    [alone] = plan_batches([member("huge", size=500)], "x", 50, 100)  # over the bytes: alone
    assert len(alone.members) == 1


def agent(sub: InMemorySubmitter, ledger: InMemoryLedger, pub: InMemoryPublisher) -> ChapterAgent:
    return ChapterAgent(
        submitter=sub,
        results=pub,
        dead_letters=InMemoryDeadLetters(),
        ledger=ledger,
        pipeline_version="pv1",
        max_text_bytes=1024,
        backoff=FAST,
        target=Target("chunks__r"),
    )


def write(chapter: str, offset: int, partition: int = 0) -> tuple[bytes, bytes, SourceRef, int]:
    value = event_bytes(event_id=str(uuid.uuid4()), chapter_id=chapter)
    return b"xiyouji", value, SourceRef(topic="t", partition=partition, offset=offset), 0


async def test_a_replay_submits_one_run_per_batch_and_records_every_chapter_pending() -> None:
    sub, ledger, pub = InMemorySubmitter(), InMemoryLedger(), InMemoryPublisher()
    deletion = event_bytes("chapter.deleted", event_id=str(uuid.uuid4()), chapter_id="gone")
    messages = [write(f"c{i}", i) for i in range(5)]
    messages.insert(2, (b"xiyouji", deletion, SourceRef(topic="t", partition=0, offset=99), 0))
    messages.append((b"other", event_bytes(), SourceRef(topic="t", partition=0, offset=9), 0))
    runs = await agent(sub, ledger, pub).handle_batch(messages, "rebuild-1", 2, 10_000)
    assert runs == [("run-1", 2), ("run-2", 2), ("run-3", 1)]
    assert [len(c["parameters"].get("batch", [c["parameters"]])) for c in sub.calls] == [2, 2, 1]
    # A batch of one is the chapter's own run, as live traffic submits it.
    assert sub.calls[2]["name"] == "xiyouji/c4@v2" and "batch" not in sub.calls[2]["parameters"]
    assert all(p["target"] == "chunks__r" for p in sub.calls[0]["parameters"]["batch"])
    pending = await ledger.chapters("pending")
    assert {(r.chapter_id, r.flow_run_id) for r in pending} == {
        ("c0", "run-1"),
        ("c1", "run-1"),
        ("c2", "run-2"),
        ("c3", "run-2"),
        ("c4", "run-3"),
    }
    [removal] = pub.published  # the deletion went out at once; the bad key was parked
    assert isinstance(removal, ChapterRemoved) and removal.target == Target("chunks__r")


def entry(chapter: str) -> dict[str, Any]:
    return {"novel_id": "n", "chapter_id": chapter, "version": 1}


async def no_pause(_: float) -> None:
    return None


class Chapters:
    """Processes entries; ``errors[chapter]`` is raised (each time, or the first times)."""

    def __init__(self, errors: dict[str, list[Exception]], report_error: Exception | None = None):
        self.errors, self.report_error = errors, report_error
        self.processed: list[str] = []
        self.reported: list[str] = []
        self.kept: list[list[str]] = []

    async def process(self, e: dict[str, Any]) -> dict[str, Any]:
        self.processed.append(e["chapter_id"])
        queued = self.errors.get(e["chapter_id"])
        if queued:
            raise queued.pop(0) if len(queued) > 1 else queued[0]
        return {"chunks": 2, "reused": 0}

    async def report(self, e: dict[str, Any], reason: str) -> None:
        if self.report_error is not None:
            raise self.report_error
        self.reported.append(f"{e['chapter_id']}: {reason}")

    async def keep(self, left: list[dict[str, Any]]) -> None:
        self.kept.append([e["chapter_id"] for e in left])


async def run(c: Chapters, names: str) -> Any:
    return await run_batch([entry(n) for n in names], c.process, c.report, c.keep, no_pause)


async def test_a_chapter_failing_for_good_is_reported_alone_and_the_batch_goes_on() -> None:
    c = Chapters({"b": [SchemaViolation("holds another event")]})
    done = await run(c, "abc")
    assert [(o.chapter, o.state) for o in done.outcomes] == [
        ("n/a@v1", "done"),
        ("n/b@v1", "failed"),
        ("n/c@v1", "done"),
    ]
    assert c.processed == ["a", "b", "c"]  # permanent: b is not tried twice
    assert c.reported == ["b: SchemaViolation: holds another event"]
    assert c.kept == [["b", "c"], ["c"], []] and done.left == [] and done.error is None


async def test_an_unexpected_error_runs_the_chapter_once_more_before_failing_it() -> None:
    c = Chapters({"a": [RuntimeError("every time")]})
    done = await run(c, "ab")
    assert c.processed == ["a", "a", "b"]
    assert [o.state for o in done.outcomes] == ["failed", "done"]
    assert c.reported == ["a: RuntimeError: every time"]


async def test_a_chapter_that_succeeds_on_its_second_try_is_done() -> None:
    class Flaky(Chapters):
        async def process(self, e: dict[str, Any]) -> dict[str, Any]:
            self.processed.append(e["chapter_id"])
            if self.processed.count(e["chapter_id"]) == 1:
                raise TimeoutError("embed took too long")
            return {"chunks": 1}

    c = Flaky({})
    done = await run(c, "ab")
    assert c.processed == ["a", "a", "b", "b"] and c.reported == []
    assert [o.state for o in done.outcomes] == ["done", "done"]


async def test_a_service_away_leaves_this_chapter_and_the_rest_for_later() -> None:
    away = ServiceUnavailable("Kafka unreachable")
    c = Chapters({"b": [away]})
    done = await run(c, "abc")
    assert [o.state for o in done.outcomes] == ["done", "later", "later"]
    assert done.left == [entry("b"), entry("c")] and done.error is away
    assert c.kept[-1] == ["b", "c"] and c.reported == []  # nothing done is kept, nothing failed
    assert c.processed == ["a", "b", "b"]  # b's second try, then c is not started


async def test_a_failure_that_cannot_be_reported_now_is_left_for_later_too() -> None:
    c = Chapters({"a": [SchemaViolation("bad")]}, report_error=PublishError("Kafka away"))
    done = await run(c, "ab")
    assert [o.state for o in done.outcomes] == ["later", "later"]
    assert done.left == [entry("a"), entry("b")]


def test_the_artifact_lists_every_chapter_and_its_outcome() -> None:
    from prefect_bridge.batch import Outcome

    md = batch_summary(
        "rebuild-1/p0/1 (2 chapters)",
        [Outcome(entry("a"), "done", "3 chunks"), Outcome(entry("b|x"), "failed", "Bad: *x*")],
    )
    assert "2 chapters: 1 done, 1 failed, 0 tried later" in md
    assert "| n\\/a\\@v1 | done | 3 chunks |" in md
    assert "b\\|x" in md and "\\*x\\*" in md  # texts from the log are shown literally


async def test_a_batch_run_that_fails_or_crashes_reports_each_chapter_it_still_holds() -> None:
    """The failure hook and the runners' watchdog report a run from its parameters as
    Prefect holds them; a batch's hold only its chapters not yet done or reported."""
    import json

    from prefect_bridge.failure_report import report_run_failure
    from schemas import ChapterFailed
    from tests.fakes import InMemoryEventLog
    from tests.unit.test_bounded_and_failures import chapter_event

    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    held = [log.flow_params(json.loads(chapter_event(c))) for c in ("c1", "c2")]
    await report_run_failure(publisher, log, {"batch": held}, "TimedOut", "run-7")
    assert [(type(r), r.chapter_id) for r in publisher.published] == [  # type: ignore[union-attr]
        (ChapterFailed, "c1"),
        (ChapterFailed, "c2"),
    ]
    assert len(publisher.dead_letters) == 2
    await report_run_failure(publisher, log, {"batch": []}, "TimedOut", "run-8")
    assert len(publisher.published) == 2  # nothing left in it: nothing to report
