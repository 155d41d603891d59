"""The result agent as the one writer: routing by target, the ledger scope following the
alias, and poison results dead-lettered instead of stalling the sink."""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from agents.index_catalog import LiveLedger
from agents.ports import Index
from agents.result_agent import ResultAgent
from agents.retry import Backoff
from schemas import ChapterEmbedded, Target, VectorStoreError, VectorStoreRejected
from streams.adapters.milvus.store import milvus_error
from tests.fakes import InMemoryCatalog, InMemoryLedger, InMemoryVectorStore
from tests.unit.test_agents import (
    InMemoryDeadLetters,
    embedded,
    msg,
    novel_removed,
    removed,
    rows_of,
)

FAST = Backoff(initial=0.001, cap=0.001)


def retarget(result: ChapterEmbedded, target: str) -> ChapterEmbedded:
    return result.model_copy(update={"target": Target(target)})


async def test_results_go_to_their_target_and_live_ones_follow_the_alias() -> None:
    catalog = InMemoryCatalog("old", "new")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    await sink.handle_batch([msg(embedded(1, 2)), msg(retarget(embedded(1, 10), "new"))])
    assert len(rows_of(catalog.store("old"))) == 2
    assert len(rows_of(catalog.store("new"))) == 10
    catalog.alias = "new"  # the rebuild switched the alias
    await sink.handle_batch([msg(embedded(2, 3))])  # a shorter live edit
    # decided against the new collection's books (10 chunks): nothing stale is left there
    assert [(v, n) for v, n, _ in rows_of(catalog.store("new"))] == [(2, 0), (2, 1), (2, 2)]
    assert len(rows_of(catalog.store("old"))) == 2  # the old collection is left as it was
    row = await catalog.indexes["new"].ledger.chapter("n1", "c1")
    assert row is not None and (row.version, row.chunk_count) == (2, 3)


async def test_results_for_a_dropped_collection_are_skipped() -> None:
    catalog = InMemoryCatalog("live")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    assert await sink.handle_batch([msg(retarget(embedded(1, 2), "gone"))]) == 0
    assert not catalog.store("live").rows


async def test_the_live_ledger_follows_the_alias() -> None:
    catalog = InMemoryCatalog("old", "new")
    live = LiveLedger(catalog)
    await live.record_submitted("n1", "c1", 1, "run")
    catalog.alias = "new"
    await live.record_submitted("n1", "c2", 1, "run")
    assert (await catalog.indexes["old"].ledger.counts())["pending"] == 1
    assert await live.chapter("n1", "c2") is not None
    assert await live.chapter("n1", "c1") is None


class Rejecting(InMemoryVectorStore):
    """Rejects every write that contains chapter ``bad`` (like a wrong dimension)."""

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        if any(r.chapter_id == "bad" for r in results):
            raise VectorStoreRejected("Milvus upsert rejected: expected dim 2, got 3")
        await super().upsert_chapters(results)

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        if chapter_id == "bad":
            raise VectorStoreRejected("Milvus delete rejected: bad filter")
        await super().delete_chapter(novel_id, chapter_id)


async def test_a_rejected_result_is_dead_lettered_and_the_rest_lands() -> None:
    store, ledger, dlq = Rejecting(), InMemoryLedger(), InMemoryDeadLetters()
    catalog = InMemoryCatalog("live")
    catalog.indexes["live"] = Index("live", store, ledger)
    sink = ResultAgent(catalog=catalog, dead_letters=dlq, backoff=FAST)
    batch = [
        msg(embedded(1, 2, chapter="a")),
        msg(embedded(1, 2, chapter="bad")),
        msg(embedded(1, 3, chapter="b")),
    ]
    assert await sink.handle_batch(batch) == 2
    assert {r["chapter_id"] for r in store.rows.values()} == {"a", "b"}
    assert [d.error.retriable for d in dlq.items] == [False]
    assert "expected dim" in dlq.items[0].error.reason
    assert await ledger.chapter("n1", "bad") is None  # not recorded as applied
    assert await sink.handle_batch([msg(removed(2, chapter="bad"))]) == 0
    assert len(dlq.items) == 2
    assert await sink.handle_batch([msg(embedded(2, 1, chapter="a"))]) == 1  # goes on


def test_milvus_errors_are_classified_at_the_adapter() -> None:
    rejected = MilvusException(6, "vector field 'embedding' expected dim 384, got 8")
    assert isinstance(milvus_error("upsert", rejected), VectorStoreRejected)
    assert not milvus_error("upsert", rejected).retriable
    flagged = MilvusException(65535, "anything", is_input_error=True)
    assert isinstance(milvus_error("upsert", flagged), VectorStoreRejected)
    for transient in (
        MilvusUnavailableException(message="server unavailable"),
        MilvusException(6, "busy", retriable=True),
        MilvusException(1, "unexpected"),
        ConnectionResetError("reset"),
    ):
        error = milvus_error("upsert", transient)
        assert isinstance(error, VectorStoreError) and error.retriable, transient


@pytest.mark.parametrize("code", [5, 6, 7, 1100])
def test_every_rejection_code_is_permanent(code: int) -> None:
    error: Any = milvus_error("upsert", MilvusException(code, "bad"))
    assert isinstance(error, VectorStoreRejected)


async def test_a_resent_novel_deletion_does_not_delete_what_came_after_the_first() -> None:
    """Found by the chaos oracle: the copy sits later in the log than the chapters written
    after the original deletion; applying it at its own offset would delete them."""
    catalog = InMemoryCatalog("live")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    deletion = novel_removed(10)
    await sink.handle_batch([msg(embedded(1, 2, offset=5)), msg(deletion)])
    await sink.handle_batch([msg(embedded(1, 3, chapter="c2", offset=11))])
    copy = deletion.model_copy(update={"source": deletion.source.model_copy(update={"offset": 12})})
    assert await sink.handle_batch([msg(copy)]) == 0
    assert len(rows_of(catalog.store("live"), "c2")) == 3


async def test_a_resent_chapter_deletion_spares_the_chapter_created_again() -> None:
    catalog = InMemoryCatalog("live")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    gone = removed(2, offset=3)
    await sink.handle_batch([msg(embedded(1, 2, offset=1)), msg(gone), msg(novel_removed(4))])
    await sink.handle_batch([msg(embedded(1, 2, offset=6))])  # the chapter, created again
    copy = gone.model_copy(update={"source": gone.source.model_copy(update={"offset": 7})})
    # the copy and the original in one batch too
    assert await sink.handle_batch([msg(copy), msg(copy)]) == 0
    assert len(rows_of(catalog.store("live"))) == 2
