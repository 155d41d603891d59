"""A chapter that fails for good during a full rebuild (issue 19, hole 5): parked in the
DLQ with its target, run once more, and counted as missing while the live index has it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from agents.decisions import ChapterState
from prefect_bridge.failure_report import report_run_failure
from schemas import LIVE, ChapterFailed, Target
from schemas.dead_letters import DeadLetter
from schemas.submissions import SubmittedRun
from streams.commands.rebuild_missing import MissingChapters, RebuildRuns
from tests.fakes import InMemoryEventLog, InMemoryLedger, InMemoryPublisher
from tests.unit.test_bounded_and_failures import chapter_event


async def test_a_rebuilds_failed_run_is_parked_with_its_target_and_not_announced() -> None:
    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    params = {**log.flow_params(json.loads(chapter_event("c3", 2))), "target": "chunks__r"}
    await report_run_failure(publisher, log, params, "embed failed", "run-9")
    [failed] = publisher.published
    assert isinstance(failed, ChapterFailed) and failed.target == Target("chunks__r")
    assert publisher.failures == []  # the platform hears of live failures only
    [(_, _, headers)] = publisher.dead_letters
    letter = DeadLetter.from_headers(headers)
    assert (
        letter.retriable and letter.target == Target("chunks__r") and letter.flow_run_id == "run-9"
    )
    # `scribe dlq list --json` shows the collection's name, as before the Target type.
    assert letter.model_dump(mode="json")["target"] == "chunks__r"
    assert failed.model_dump(mode="json")["target"] == "chunks__r"


async def test_a_live_failure_is_parked_without_a_target() -> None:
    publisher, log = InMemoryPublisher(), InMemoryEventLog()
    await report_run_failure(publisher, log, log.flow_params(json.loads(chapter_event())), "x", "r")
    [(_, _, headers)] = publisher.dead_letters
    assert DeadLetter.from_headers(headers).target == LIVE
    assert DeadLetter.from_headers(headers).model_dump(mode="json")["target"] is None


class Prefect:
    """Records submissions; runs listed in ``failing`` end Failed."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.failing: set[str] = set()

    async def submit(self, *, name: str, idempotency_key: str, tags: list[str], **kw: Any) -> Any:
        self.keys.append(idempotency_key)
        return SubmittedRun(id=f"run-{len(self.keys)}", ended=False)

    async def in_flight(self, tag: str | None = None) -> int:
        return 0

    async def failed(self, tag: str) -> set[str]:
        assert tag == "rebuild:chunks__r"
        return self.failing


async def test_only_chapters_the_live_index_holds_are_missing_and_each_runs_again() -> None:
    prefect = Prefect()
    runs = RebuildRuns(prefect, "rebuild:chunks__r")  # type: ignore[arg-type]
    for chapter, version in (("a", 1), ("a", 2), ("b", 1), ("c", 1), ("d", 1)):
        await runs.submit(
            name=f"n/{chapter}@v{version}",
            idempotency_key=f"e-{chapter}{version}:pv",
            tags=["rebuild:chunks__r"],
            parameters={"novel_id": "n", "chapter_id": chapter, "version": version},
        )
    # Failed: a's newest run (run-2), b, c; and a's older run, which a newer one replaced.
    prefect.failing = {"run-1", "run-2", "run-3", "run-4"}
    live = InMemoryLedger()
    indexed = ChapterState("n", "a", 1, False, indexed_version=1, chunk_count=1)
    await live.record_applied(indexed)
    await live.record_applied(replace(indexed, chapter_id="d"))  # d's run did not fail
    deleted = replace(indexed, chapter_id="b", version=3, deleted=True, indexed_version=None)
    await live.record_applied(deleted)
    # c: the live index never had it either (a chapter failing everywhere): not missing.
    missing = MissingChapters(runs, live, InMemoryLedger())
    assert await missing.chapters() == [("n", "a")]
    await missing.retry([("n", "a"), ("n", "zzz")])
    assert prefect.keys[-1] == "e-a2:pv:again1"  # the newest write, under a new key
    assert len(prefect.keys) == 6  # zzz was never submitted by this rebuild: not retried
    assert await missing.chapters() == []  # its newest run is the new one (not failed)


async def test_a_chapter_a_batch_run_reported_failed_is_missing_and_runs_again_alone() -> None:
    """Issue 22: a replay's batch run does not fail for one chapter; it reports that chapter
    failed, which the rebuild's books record. That chapter (and only it) is missing when the
    live index holds it, and runs once more in a run of its own."""
    prefect = Prefect()
    runs = RebuildRuns(prefect, "rebuild:chunks__r")  # type: ignore[arg-type]
    entries = [
        {"novel_id": "n", "chapter_id": c, "version": 2, "target": "chunks__r"} for c in "xy"
    ]
    await runs.submit(
        name="rebuild-1/p0/1 (2 chapters)",
        idempotency_key="batch:abc",
        tags=["batch", "rebuild:chunks__r"],
        parameters={"batch": entries},
    )
    live, books = InMemoryLedger(), InMemoryLedger()
    for chapter in "xy":
        await live.record_applied(ChapterState("n", chapter, 2, False, indexed_version=2))
    missing = MissingChapters(runs, live, books)
    assert await missing.chapters() == []  # the batch run is not Failed, nothing reported
    await books.record_failed("n", "y", 1, "run-1", "an older version's failure")
    assert await missing.chapters() == []  # not the version this rebuild submitted
    await books.record_failed("n", "y", 2, "run-1", "result too large")
    assert await missing.chapters() == [("n", "y")]
    await missing.retry([("n", "y")])
    assert prefect.keys[-1] == "batch:abc:n/y:again1"
    assert await missing.chapters() == []  # its newest run is its own now, not Failed
