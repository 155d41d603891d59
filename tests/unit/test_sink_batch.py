"""The sink's batch keeps the ledger true to the index (issue 19, hole 7).

Three holes, each a test that failed before its fix:

* a newer version Milvus rejects in the same batch as an older one: the older one was
  recorded as applied although the queue had replaced its rows by the rejected ones;
* a failure and a success of the same version in one batch left the chapter "failed"
  (failures were recorded after the batch, whatever their order); and a failure logged
  before its novel's deletion stayed "failed" in the ledger;
* a collection dropped under the sink: the retry loops never looked the index up again,
  so the sink retried a gone collection for good.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.index_catalog import SingleIndex
from agents.ledger import Ledger
from agents.ports import Index
from agents.result_agent import ResultAgent
from schemas import (
    ChapterEmbedded,
    ChapterFailed,
    SourceRef,
    Target,
    VectorStoreError,
    VectorStoreRejected,
)
from streams.adapters.ledger.sqlite import SqliteLedger
from tests.fakes import InMemoryLedger, InMemoryVectorStore
from tests.unit.test_agents import FAST, InMemoryDeadLetters, embedded, msg, novel_removed, rows_of


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    led: Ledger = (
        InMemoryLedger() if request.param == "memory" else SqliteLedger(tmp_path / "ledger.db")
    )
    yield led
    await led.close()


class PickyStore(InMemoryVectorStore):
    """Rejects (as Milvus does a vector of another dimension) any write holding a chapter
    version listed in ``bad``."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.bad = bad

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        if any(r.version in self.bad for r in results):
            raise VectorStoreRejected("the vector has another dimension")
        await super().upsert_chapters(results)


def failed(version: int, offset: int = 100) -> ChapterFailed:
    return ChapterFailed(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id="c1",
        version=version,
        reason="embedder broke",
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


async def test_a_rejected_newer_version_leaves_the_older_one_written_and_recorded(
    ledger: Ledger,
) -> None:
    store, dlq = PickyStore(bad={2}), InMemoryDeadLetters()
    agent = ResultAgent(catalog=SingleIndex(store, ledger), dead_letters=dlq, backoff=FAST)
    await agent.handle_batch([msg(embedded(1, 2)), msg(embedded(2, 3))])
    assert [type(i.error) for i in dlq.items] == [VectorStoreRejected]
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.indexed_version == 1 and state.chunk_count == 2
    assert rows_of(store) == [(1, 0, "c1 v1 #0"), (1, 1, "c1 v1 #1")]


async def test_when_every_version_is_rejected_none_is_recorded(ledger: Ledger) -> None:
    store, dlq = PickyStore(bad={1, 2}), InMemoryDeadLetters()
    agent = ResultAgent(catalog=SingleIndex(store, ledger), dead_letters=dlq, backoff=FAST)
    await agent.handle_batch([msg(embedded(1, 2)), msg(embedded(2, 3))])
    assert len(dlq.items) == 2 and rows_of(store) == []
    state = await ledger.chapter("n1", "c1")
    assert state is None or state.indexed_version is None


@pytest.mark.parametrize("failure_first", [True, False], ids=["failure-first", "success-first"])
async def test_a_failure_and_a_success_of_one_version_in_a_batch_leave_it_indexed(
    ledger: Ledger, failure_first: bool
) -> None:
    agent = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), ledger),
        dead_letters=InMemoryDeadLetters(),
        backoff=FAST,
    )
    batch = [msg(failed(1)), msg(embedded(1, 2))]
    await agent.handle_batch(batch if failure_first else batch[::-1])
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.status == "indexed", state


async def test_a_failure_of_a_newer_version_is_still_recorded(ledger: Ledger) -> None:
    agent = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), ledger),
        dead_letters=InMemoryDeadLetters(),
        backoff=FAST,
    )
    await agent.handle_batch([msg(embedded(1, 2)), msg(failed(2))])
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.status == "failed" and state.indexed_version == 1


async def test_a_failure_from_before_the_novels_deletion_is_not_recorded(ledger: Ledger) -> None:
    agent = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), ledger),
        dead_letters=InMemoryDeadLetters(),
        backoff=FAST,
    )
    await agent.handle_batch([msg(novel_removed(offset=50))])
    await agent.handle_batch([msg(failed(1, offset=40))])  # reported late, logged before
    assert await ledger.chapter("n1", "c1") is None
    assert (await ledger.counts())["failed"] == 0


class DroppingCatalog:
    """A rebuild's collection that an operator drops while its results are in flight:
    its store fails as Milvus does for a gone collection (retriable: Milvus itself may be
    away), and once dropped the catalog no longer resolves it."""

    def __init__(self, ledger: Ledger) -> None:
        self.dropped = False
        self.resolved = 0
        self.store = GoneStore()
        self.ledger = ledger

    async def resolve(self, target: str | None) -> Index | None:
        self.resolved += 1
        if self.resolved > 1:
            self.dropped = True
        return None if self.dropped else Index(target or "live", self.store, self.ledger)

    async def close(self) -> None:
        pass


class GoneStore(InMemoryVectorStore):
    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        raise VectorStoreError("collection not found")


async def test_a_collection_dropped_under_the_sink_does_not_stall_it(ledger: Ledger) -> None:
    catalog = DroppingCatalog(ledger)
    agent = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    result: Any = embedded(1, 2).model_copy(update={"target": Target("rebuild_1")})
    applied = await asyncio.wait_for(agent.handle_batch([msg(result)]), timeout=10)
    assert applied == 0 and catalog.resolved >= 2
