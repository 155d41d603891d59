"""The chapter and result agents against in-memory fakes, and the ledger contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.chapter_agent import ChapterAgent
from agents.decisions import ChapterState, SubmitFlowRun, plan_event
from agents.index_catalog import SingleIndex
from agents.ledger import Ledger
from agents.result_agent import ResultAgent, ResultMessage
from agents.retry import Backoff
from schemas import (
    ChapterEmbedded,
    ChapterRemoved,
    ChunkVector,
    ConfigurationError,
    FlowSubmissionError,
    MalformedJSON,
    NovelRemoved,
    PublishError,
    SchemaViolation,
    SourceRef,
    VectorStoreError,
    parse_event,
)
from schemas.submissions import SubmittedRun
from streams.adapters.ledger.sqlite import SqliteLedger
from tests.fakes import (
    InMemoryDeadLetters,
    InMemoryLedger,
    InMemoryPublisher,
    InMemorySubmitter,
    InMemoryVectorStore,
)

FAST = Backoff(initial=0.001, cap=0.01)
WHEN = datetime(2024, 5, 1, 12, tzinfo=UTC)
SOURCE = SourceRef(topic="novel-events", partition=1, offset=7)


# -- fakes ---------------------------------------------------------------------------------


def event_bytes(event_type: str = "chapter.created", **overrides: Any) -> bytes:
    obj: dict[str, Any] = {
        "event_id": "d3b07384-d113-4ec6-a5b0-5c9e3f1e2a10",
        "event_type": event_type,
        "novel_id": "xiyouji",
        "version": 2,
        "occurred_at": "2024-05-01T12:00:00Z",
    }
    if event_type != "novel.deleted":
        obj["chapter_id"] = "ch0001"
    if event_type in ("chapter.created", "chapter.updated"):
        obj.update(title="第一回", text="灵根育孕源流出。心性修持大道生。")
    obj.update(overrides)
    return json.dumps(obj, ensure_ascii=False).encode()


def chapter_agent(
    submitter: InMemorySubmitter | None = None,
    dead_letters: InMemoryDeadLetters | None = None,
    backoff: Backoff = FAST,
) -> tuple[ChapterAgent, InMemorySubmitter, InMemoryPublisher, InMemoryDeadLetters]:
    sub = submitter or InMemorySubmitter()
    pub = InMemoryPublisher()
    dlq = dead_letters or InMemoryDeadLetters()
    agent = ChapterAgent(
        submitter=sub,
        results=pub,
        dead_letters=dlq,
        ledger=InMemoryLedger(),
        pipeline_version="pv1",
        max_text_bytes=1024,
        backoff=backoff,
    )
    return agent, sub, pub, dlq


# -- chapter agent -------------------------------------------------------------------------


async def test_valid_chapter_event_submits_the_planned_run() -> None:
    agent, sub, pub, dlq = chapter_agent()
    value = event_bytes()
    run_id = await agent.handle(b"xiyouji", value, SOURCE)
    assert run_id == "run-1"
    plan = plan_event(parse_event(value), SOURCE, "pv1")
    assert isinstance(plan, SubmitFlowRun)
    assert sub.calls == [
        {
            "name": plan.name,
            "idempotency_key": plan.idempotency_key,
            "tags": plan.tags,
            "parameters": plan.parameters,
        }
    ]
    assert sub.calls[0]["name"] == "xiyouji/ch0001@v2"
    assert dlq.items == [] and pub.published == []


async def test_a_write_standing_before_its_novels_deletion_is_ignored() -> None:
    """Redriven after the novel's deletion applied: no run, nothing pending."""
    agent, sub, pub, _ = chapter_agent()
    await agent.ledger.delete_novel("xiyouji", SOURCE.offset + 5)
    assert await agent.handle(b"xiyouji", event_bytes(), SOURCE) is None
    assert sub.calls == [] and pub.published == []
    assert await agent.ledger.chapter("xiyouji", "ch0001") is None
    later = SOURCE.model_copy(update={"offset": SOURCE.offset + 6})  # written again after:
    again = event_bytes(event_id="5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f")  # a new event
    assert await agent.handle(b"xiyouji", again, later) == "run-1"


async def test_a_run_that_had_already_ended_is_not_recorded_as_pending() -> None:
    """A re-sent event: Prefect returns its run, which ended long ago."""

    class Ended(InMemorySubmitter):
        async def submit(self, **kwargs: Any) -> SubmittedRun:
            return SubmittedRun(id=(await super().submit(**kwargs)).id, ended=True)

    agent, _, _, _ = chapter_agent(Ended())
    assert await agent.handle(b"xiyouji", event_bytes(), SOURCE) == "run-1"
    assert await agent.ledger.chapter("xiyouji", "ch0001") is None
    fresh, _, _, _ = chapter_agent()
    await fresh.handle(b"xiyouji", event_bytes(), SOURCE)
    state = await fresh.ledger.chapter("xiyouji", "ch0001")
    assert state is not None and state.status == "pending"


async def test_message_without_key_is_dead_lettered() -> None:
    """The contract says the key must be the novel_id: without one, a novel's events may
    land on different partitions and lose their order (issue 19, hole 1)."""
    agent, sub, _, dlq = chapter_agent()
    assert await agent.handle(None, event_bytes("chapter.updated"), SOURCE) is None
    assert sub.calls == [] and len(dlq.items) == 1
    assert isinstance(dlq.items[0].error, SchemaViolation)


async def test_invalid_bytes_are_dead_lettered_not_submitted() -> None:
    agent, sub, pub, dlq = chapter_agent()
    assert await agent.handle(b"k", b"{not json", SOURCE) is None
    assert sub.calls == [] and pub.published == []
    assert len(dlq.items) == 1
    item = dlq.items[0]
    assert item.key == b"k" and item.value == b"{not json" and item.source == SOURCE
    assert isinstance(item.error, MalformedJSON)


async def test_key_other_than_novel_id_is_dead_lettered() -> None:
    agent, sub, _, dlq = chapter_agent()
    assert await agent.handle(b"other-novel", event_bytes(), SOURCE) is None
    assert sub.calls == []
    assert len(dlq.items) == 1
    assert isinstance(dlq.items[0].error, SchemaViolation)
    assert "novel_id" in dlq.items[0].error.reason


async def test_too_large_text_is_dead_lettered() -> None:
    agent, sub, _, dlq = chapter_agent()
    await agent.handle(b"xiyouji", event_bytes(text="字" * 400), SOURCE)  # 1200 bytes > 1024
    assert sub.calls == [] and len(dlq.items) == 1


async def test_retriable_submit_failures_are_retried() -> None:
    sub = InMemorySubmitter([FlowSubmissionError("503"), FlowSubmissionError("503")])
    agent, _, _, dlq = chapter_agent(submitter=sub)
    assert await agent.handle(b"xiyouji", event_bytes(), SOURCE) == "run-1"  # the one run made
    assert len(sub.calls) == 3
    assert sub.calls[0] == sub.calls[2]  # same idempotency key on every attempt
    assert dlq.items == []


async def test_retries_stop_after_the_attempt_budget() -> None:
    sub = InMemorySubmitter([FlowSubmissionError(m) for m in ("a", "b", "c")])
    agent, _, _, _ = chapter_agent(submitter=sub, backoff=Backoff(initial=0.001, attempts=2))
    with pytest.raises(FlowSubmissionError, match="b"):
        await agent.handle(b"xiyouji", event_bytes(), SOURCE)
    assert len(sub.calls) == 2


@pytest.mark.parametrize("error", [ConfigurationError("rejected"), RuntimeError("bug")])
async def test_non_retriable_submit_error_propagates(error: Exception) -> None:
    sub = InMemorySubmitter([error])
    agent, _, _, dlq = chapter_agent(submitter=sub)
    with pytest.raises(type(error)):
        await agent.handle(b"xiyouji", event_bytes(), SOURCE)
    assert len(sub.calls) == 1
    assert dlq.items == []  # a valid event is never dead-lettered for a service error


async def test_retriable_dead_letter_failure_is_retried() -> None:
    dlq = InMemoryDeadLetters([PublishError("broker down")])
    agent, _, _, _ = chapter_agent(dead_letters=dlq)
    await agent.handle(b"k", b"\xff", SOURCE)
    assert dlq.attempts == 2 and len(dlq.items) == 1


async def test_chapter_deletion_publishes_a_removal() -> None:
    agent, sub, pub, dlq = chapter_agent()
    assert await agent.handle(b"xiyouji", event_bytes("chapter.deleted", version=3), SOURCE) is None
    assert sub.calls == [] and dlq.items == []
    assert len(pub.published) == 1
    result = pub.published[0]
    assert isinstance(result, ChapterRemoved)
    assert (result.chapter_id, result.version, result.source) == ("ch0001", 3, SOURCE)


async def test_novel_deletion_publishes_a_novel_removal() -> None:
    agent, sub, pub, _ = chapter_agent()
    await agent.handle(b"xiyouji", event_bytes("novel.deleted"), SOURCE)
    assert sub.calls == []
    assert [type(r) for r in pub.published] == [NovelRemoved]
    assert pub.published[0].source == SOURCE


# -- ledger contract -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    led: Ledger = (
        InMemoryLedger()
        if request.param == "memory"
        else SqliteLedger(tmp_path / "sub" / "ledger.db")
    )
    yield led
    await led.close()


def row(novel: str, chapter: str, version: int, deleted: bool = False, **kw: Any) -> ChapterState:
    return ChapterState(
        novel,
        chapter,
        version,
        deleted,
        indexed_version=None if deleted else version,
        model=kw.get("model", "m"),
        chunk_count=kw.get("chunks", 2),
        flow_run_id=kw.get("run"),
        updated_at=WHEN,
    )


# -- result agent --------------------------------------------------------------------------


class CountingStore(InMemoryVectorStore):
    """The in-memory store with queued write failures."""

    def __init__(self, write_failures: list[Exception] | None = None) -> None:
        super().__init__()
        self.write_failures = list(write_failures or [])
        self.writes = 0

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        self.writes += 1
        if self.write_failures:
            raise self.write_failures.pop(0)
        await super().upsert_chapters(results)


_offsets = iter(range(10_000))


def embedded(
    version: int, chunks: int, *, chapter: str = "c1", novel: str = "n1", offset: int = 100
) -> ChapterEmbedded:
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id=chapter,
        version=version,
        model="m",
        dimension=2,
        pipeline_version="p",
        flow_run_id=f"run-{version}",
        chunks=tuple(
            ChunkVector(chunk_no=i, text=f"{chapter} v{version} #{i}", vector=(1.0, float(i)))
            for i in range(chunks)
        ),
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


def removed(version: int, *, chapter: str = "c1", offset: int = 100) -> ChapterRemoved:
    return ChapterRemoved(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id=chapter,
        version=version,
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


def novel_removed(offset: int, novel: str = "n1") -> NovelRemoved:
    return NovelRemoved(
        event_id=uuid.uuid4(),
        novel_id=novel,
        version=1,
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


def msg(result: Any) -> ResultMessage:
    value = result if isinstance(result, bytes) else result.model_dump_json().encode()
    return ResultMessage(
        b"n1", value, SourceRef(topic="novel-events.embeddings", partition=0, offset=next(_offsets))
    )


def rows_of(store: InMemoryVectorStore, chapter: str = "c1") -> list[tuple[int, int, str]]:
    return sorted(
        (r["chapter_version"], r["chunk_no"], r["text"])
        for r in store.rows.values()
        if r["chapter_id"] == chapter
    )


@pytest.fixture
def sink(ledger: Ledger) -> tuple[ResultAgent, CountingStore, InMemoryDeadLetters]:
    store = CountingStore()
    dlq = InMemoryDeadLetters()
    return (
        ResultAgent(catalog=SingleIndex(store, ledger), dead_letters=dlq, backoff=FAST),
        store,
        dlq,
    )


Sink = tuple[ResultAgent, CountingStore, InMemoryDeadLetters]


async def test_embedding_is_written_and_recorded(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    assert await agent.handle_batch([msg(embedded(1, 3))]) == 1
    assert rows_of(store) == [(1, 0, "c1 v1 #0"), (1, 1, "c1 v1 #1"), (1, 2, "c1 v1 #2")]
    state = await ledger.chapter("n1", "c1")
    assert state is not None
    assert (
        state.version,
        state.deleted,
        state.indexed_version,
        state.chunk_count,
        state.model,
        state.flow_run_id,
    ) == (1, False, 1, 3, "m", "run-1")


async def test_shorter_embedding_leaves_no_stale_chunks(sink: Sink) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(embedded(1, 5))])
    await agent.handle_batch([msg(embedded(2, 2))])
    assert rows_of(store) == [(2, 0, "c1 v2 #0"), (2, 1, "c1 v2 #1")]


async def test_redelivery_gives_the_same_rows(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    result = embedded(1, 3)
    await agent.handle_batch([msg(result)])
    before = dict(store.rows)
    await agent.handle_batch([msg(result), msg(result)])
    assert store.rows == before
    assert len(store.rows) == 3
    assert await ledger.counts() == {"pending": 0, "indexed": 1, "deleted": 0, "failed": 0}


async def test_out_of_order_in_one_batch_keeps_the_newest(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    assert await agent.handle_batch([msg(embedded(3, 2)), msg(embedded(2, 4))]) == 1
    assert rows_of(store) == [(3, 0, "c1 v3 #0"), (3, 1, "c1 v3 #1")]
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.version == 3


async def test_out_of_order_across_batches_keeps_the_newest(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(embedded(3, 2))])
    assert await agent.handle_batch([msg(embedded(2, 4))]) == 0
    assert rows_of(store) == [(3, 0, "c1 v3 #0"), (3, 1, "c1 v3 #1")]
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.version == 3


async def test_in_order_versions_in_one_batch_end_at_the_last(sink: Sink) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(embedded(1, 4)), msg(embedded(2, 1)), msg(embedded(3, 2))])
    assert rows_of(store) == [(3, 0, "c1 v3 #0"), (3, 1, "c1 v3 #1")]


@pytest.mark.parametrize("same_batch", [True, False])
async def test_delete_then_late_older_embedding_leaves_no_rows(
    sink: Sink, ledger: Ledger, same_batch: bool
) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(embedded(1, 2))])
    late = [msg(removed(2)), msg(embedded(2, 3)), msg(embedded(1, 3))]
    if same_batch:
        await agent.handle_batch(late)
    else:
        for m in late:
            await agent.handle_batch([m])
    assert rows_of(store) == []
    state = await ledger.chapter("n1", "c1")
    assert state is not None
    assert (state.version, state.deleted, state.indexed_version, state.chunk_count) == (
        2,
        True,
        None,
        0,
    )
    assert await ledger.counts() == {"pending": 0, "indexed": 0, "deleted": 1, "failed": 0}


async def test_embedding_after_delete_of_older_version_applies(sink: Sink) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(removed(2)), msg(embedded(3, 1))])
    assert rows_of(store) == [(3, 0, "c1 v3 #0")]


async def test_novel_removal_drops_all_its_chapters(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    await agent.handle_batch(
        [
            msg(embedded(1, 2, chapter="a", offset=1)),
            msg(embedded(1, 3, chapter="b", offset=2)),
            msg(embedded(1, 1, novel="other", chapter="a", offset=3)),
        ]
    )
    assert len(store.rows) == 6
    await agent.handle_batch([msg(novel_removed(offset=10))])
    assert await store.count("n1") == 0
    assert await store.count("other") == 1
    assert await ledger.chapter("n1", "a") is None
    assert await ledger.chapter("n1", "b") is None
    assert await ledger.novel_deleted_offset("n1") == 10
    # a result of an event logged before the deletion stays out, a later one comes in
    await agent.handle_batch([msg(embedded(2, 2, chapter="a", offset=9))])
    assert await store.count("n1") == 0
    await agent.handle_batch([msg(embedded(1, 2, chapter="c", offset=11))])
    assert rows_of(store, "c") == [(1, 0, "c v1 #0"), (1, 1, "c v1 #1")]


async def test_novel_removal_inside_a_batch(sink: Sink, ledger: Ledger) -> None:
    agent, store, _ = sink
    await agent.handle_batch(
        [
            msg(embedded(1, 2, chapter="a", offset=1)),
            msg(novel_removed(offset=5)),
            msg(embedded(2, 2, chapter="a", offset=4)),  # logged before the deletion
            msg(embedded(1, 1, chapter="b", offset=6)),  # logged after it
        ]
    )
    assert rows_of(store, "a") == []
    assert rows_of(store, "b") == [(1, 0, "b v1 #0")]
    assert await ledger.chapter("n1", "a") is None
    b = await ledger.chapter("n1", "b")
    assert b is not None and b.version == 1
    assert await ledger.novel_deleted_offset("n1") == 5


async def test_flush_once_per_batch_and_not_for_no_change(sink: Sink) -> None:
    agent, store, _ = sink
    await agent.handle_batch([msg(embedded(1, 1, chapter=c)) for c in "abcde"])
    assert store.flushes == 1
    await agent.handle_batch([msg(removed(1, chapter="a")), msg(embedded(2, 1, chapter="b"))])
    assert store.flushes == 2
    await agent.handle_batch([msg(embedded(1, 1, chapter="a"))])  # older than the delete
    assert store.flushes == 2


async def test_invalid_result_is_dead_lettered_and_batch_goes_on(sink: Sink) -> None:
    agent, store, dlq = sink
    bad = msg(b'{"event_type": "chapter.embedded"}')
    assert await agent.handle_batch([bad, msg(embedded(1, 1))]) == 1
    assert len(dlq.items) == 1
    assert dlq.items[0].value == bad.value and dlq.items[0].source == bad.source
    assert isinstance(dlq.items[0].error, SchemaViolation)
    assert len(store.rows) == 1


async def test_retriable_store_failure_is_retried(ledger: Ledger) -> None:
    store = CountingStore([VectorStoreError("busy")])
    agent = ResultAgent(
        catalog=SingleIndex(store, ledger), dead_letters=InMemoryDeadLetters(), backoff=FAST
    )
    assert await agent.handle_batch([msg(embedded(1, 2))]) == 1
    assert store.writes == 2 and len(store.rows) == 2


async def test_ledger_is_not_updated_when_flush_fails(ledger: Ledger) -> None:
    class BrokenFlush(InMemoryVectorStore):
        async def flush(self) -> None:
            raise ConfigurationError("collection dropped")

    agent = ResultAgent(
        catalog=SingleIndex(BrokenFlush(), ledger), dead_letters=InMemoryDeadLetters(), backoff=FAST
    )
    with pytest.raises(ConfigurationError):
        await agent.handle_batch([msg(embedded(1, 2))])
    assert await ledger.chapter("n1", "c1") is None


async def test_result_version_beyond_int64_does_not_crash_the_sink(tmp_path: Path) -> None:
    """Milvus stores ``chapter_version`` as INT64 and the SQLite ledger as INTEGER.

    A result whose version does not fit must be refused (dead-lettered) when parsed, not
    raise OverflowError (not a ScribeError) from ``SqliteLedger.save_chapter`` after the
    index write: that crashes the sink and the same message crashes it on every replay.
    """
    led = SqliteLedger(tmp_path / "ledger.db")
    dlq = InMemoryDeadLetters()
    agent = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), led), dead_letters=dlq, backoff=FAST
    )
    try:
        obj = json.loads(embedded(1, 1).model_dump_json())
        obj["version"] = 2**63  # built as JSON: the model may (and should) refuse it
        await agent.handle_batch([msg(json.dumps(obj).encode())])
        assert len(dlq.items) == 1
    finally:
        await led.close()


async def test_a_batch_is_one_upsert_and_trims_only_what_may_be_stale(ledger: Ledger) -> None:
    store = InMemoryVectorStore()
    agent = ResultAgent(
        catalog=SingleIndex(store, ledger), dead_letters=InMemoryDeadLetters(), backoff=FAST
    )
    for chapter in ("a", "b", "c"):  # submitted first, as the chapter agent records it
        await ledger.record_submitted("n1", chapter, 1, "run")
    first = [msg(embedded(1, 3, chapter=c)) for c in ("a", "b", "c")]
    assert await agent.handle_batch(first) == 3
    assert (store.upserts, store.trims) == (1, 0)  # new chapters: nothing can be stale
    # a longer and two shorter versions in one batch: only the shorter ones are trimmed,
    # in one call
    second = [msg(embedded(2, n, chapter=c)) for c, n in (("a", 5), ("b", 1), ("c", 2))]
    assert await agent.handle_batch(second) == 3
    assert (store.upserts, store.trims, store.trim_calls) == (2, 2, 1)
    assert sorted(r["chunk_no"] for r in store.rows.values() if r["chapter_id"] == "b") == [0]
    assert sorted(r["chunk_no"] for r in store.rows.values() if r["chapter_id"] == "c") == [0, 1]
    assert len([r for r in store.rows.values() if r["chapter_id"] == "a"]) == 5


async def test_in_batch_versions_keep_the_trim_of_an_older_shrink(ledger: Ledger) -> None:
    store = InMemoryVectorStore()
    agent = ResultAgent(
        catalog=SingleIndex(store, ledger), dead_letters=InMemoryDeadLetters(), backoff=FAST
    )
    assert await agent.handle_batch([msg(embedded(1, 10))]) == 1
    # v2 (3 chunks) and v3 (5 chunks) in one batch: rows 5..9 of v1 must still go
    assert await agent.handle_batch([msg(embedded(2, 3)), msg(embedded(3, 5))]) == 2
    rows = [r for r in store.rows.values() if r["chapter_id"] == "c1"]
    assert sorted(r["chunk_no"] for r in rows) == [0, 1, 2, 3, 4]
    assert {r["chapter_version"] for r in rows} == {3}


async def test_a_delete_after_an_embedding_in_the_same_batch_wins(ledger: Ledger) -> None:
    store = InMemoryVectorStore()
    agent = ResultAgent(
        catalog=SingleIndex(store, ledger), dead_letters=InMemoryDeadLetters(), backoff=FAST
    )
    assert await agent.handle_batch([msg(embedded(1, 4)), msg(removed(2))]) == 2
    assert not [r for r in store.rows.values() if r["chapter_id"] == "c1"]


async def test_a_batch_reads_the_ledger_once_and_records_it_once() -> None:
    class Counting(InMemoryLedger):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        async def chapter(self, novel_id: str, chapter_id: str) -> Any:
            self.calls.append("chapter")
            return await super().chapter(novel_id, chapter_id)

        async def chapters_by_key(self, keys: Any) -> Any:
            self.calls.append("chapters_by_key")
            return await super().chapters_by_key(keys)

        async def novel_deleted_offset(self, novel_id: str) -> Any:
            self.calls.append("novel_deleted_offset")
            return await super().novel_deleted_offset(novel_id)

        async def record_applied_many(self, states: Any) -> None:
            self.calls.append("record_applied_many")
            await super().record_applied_many(states)

    ledger = Counting()
    agent = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), ledger),
        dead_letters=InMemoryDeadLetters(),
        backoff=FAST,
    )
    batch = [msg(embedded(1, 2, chapter=c)) for c in "abcde"] + [msg(removed(1, chapter="z"))]
    assert await agent.handle_batch(batch) == 6
    assert ledger.calls == ["chapters_by_key", "novel_deleted_offset", "record_applied_many"]
    assert {k[1] for k in ledger.rows} == set("abcdez")


async def test_a_write_left_out_for_its_novels_deletion_stays_out_when_re_sent() -> None:
    """Chaos seed 616: the novel's deletion (offset 17) applied ahead of the worker, which
    then left out the chapter's write (offset 15) and ran the same event re-sent by the
    platform at offset 19: the deleted chapter came back. The re-sent copy is the write
    the deletion beat; a new event of the novel after the deletion still runs."""
    agent, sub, _, _ = chapter_agent()
    await agent.ledger.delete_novel("xiyouji", 17)
    write = event_bytes(version=1)
    at = SOURCE.model_copy(update={"offset": 15})
    assert await agent.handle(b"xiyouji", write, at) is None
    assert await agent.handle(b"xiyouji", write, at.model_copy(update={"offset": 19})) is None
    assert sub.calls == []
    written_again = event_bytes(version=1, event_id="0b6f5a2e-7f52-4c8e-9d3a-1e2f3a4b5c6d")
    assert await agent.handle(b"xiyouji", written_again, at.model_copy(update={"offset": 21}))
    assert len(sub.calls) == 1


async def test_a_removal_outlasting_the_bounded_retries_is_applied_not_dead_lettered(
    ledger: Ledger,
) -> None:
    """Found in review (issue 20): a deletion whose index kept failing past the bounded
    retries was dead-lettered as if Milvus had refused it, so the chapter stayed
    searchable. A retriable failure is an outage: the index is looked up again and the
    deletion applied once it answers."""

    class DownAWhile(InMemoryVectorStore):
        def __init__(self, failures: int) -> None:
            super().__init__()
            self.failures = failures

        async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
            if self.failures > 0:
                self.failures -= 1
                raise VectorStoreError("Milvus unreachable")
            await super().delete_chapter(novel_id, chapter_id)

    store = DownAWhile(failures=0)
    dlq = InMemoryDeadLetters()
    agent = ResultAgent(
        catalog=SingleIndex(store, ledger), dead_letters=dlq, backoff=FAST, reresolve_attempts=3
    )
    assert await agent.handle_batch([msg(embedded(1, 2))]) == 1
    store.failures = 3 * 3 + 1  # more than three rounds of bounded retries
    assert await agent.handle_batch([msg(removed(2))]) == 1
    assert dlq.items == []
    assert rows_of(store) == []
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.deleted
