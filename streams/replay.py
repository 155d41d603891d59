"""``scribe replay``: reprocess history from Kafka, beside the running workers.

Two modes, two scopes:

* ``reembed`` runs the flows again under a new pipeline version; ``resink`` rebuilds the
  index from the results topic alone, without embedding.
* A *full* replay (``--from earliest``, all novels) builds a **new physical collection**
  with its own ledger scope while search keeps using the old one; when it has caught up
  with the live stream it points the alias at the new collection atomically, catches up
  once more (events that raced the switch), and keeps the old collection until
  ``scribe index drop``. A *partial* replay (``--novel`` or ``--from <time>``) works **in
  place** on the live index, where the ledger's newest-wins rules keep it correct.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.chapter_agent import ChapterAgent
from agents.ledger import Ledger
from agents.milvus_store import MilvusVectorStore
from agents.result_agent import ResultAgent, ResultMessage
from agents.vector_store import collection_for_model
from prefect_bridge.publisher import KafkaResultPublisher
from prefect_bridge.runtime import pipeline_version
from prefect_bridge.submitter import PrefectFlowSubmitter
from schemas import ScribeError, SourceRef
from streams.kafka import client_config, partitions_of
from streams.settings import Settings
from streams.wiring import chunking_policy, embedder_identity, open_ledger, vector_store

log = logging.getLogger("scribe.replay")

Mode = Literal["reembed", "resink"]
Start = Literal["earliest"] | datetime
Tick = Callable[[int, int], None]  # (done, total)


class DiscardDeadLetters:
    """Replays skip invalid input: the live worker dead-lettered it already."""

    def __init__(self) -> None:
        self.count = 0

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Count and drop."""
        self.count += 1


@dataclass
class ReplaySummary:
    """What a replay did."""

    mode: str
    scope: str
    read: int = 0
    skipped_other_novels: int = 0
    runs_submitted: int = 0
    results_applied: int = 0
    invalid_skipped: int = 0
    collection: str | None = None
    previous_collection: str | None = None
    pipeline_version: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class TopicReader:
    """Reads one topic from chosen start offsets under its own consumer group."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self._topic = topic
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            **client_config(settings),
            group_id=group,
            enable_auto_commit=False,
            max_partition_fetch_bytes=settings.max_result_bytes,
            fetch_max_bytes=settings.max_result_bytes,
        )
        self.partitions: list[TopicPartition] = []
        self.read = 0

    async def start(self, start: Start | Literal["end"]) -> int:
        """Assign every partition, seek to ``start``; return messages up to the end now."""
        await self._consumer.start()
        parts = await partitions_of(self._settings, self._topic)
        self.partitions = [TopicPartition(self._topic, p) for p in parts]
        self._consumer.assign(self.partitions)
        ends = await self._consumer.end_offsets(self.partitions)
        if start == "end":
            starts = ends
        elif start == "earliest":
            starts = await self._consumer.beginning_offsets(self.partitions)
        else:
            ms = int(start.timestamp() * 1000)
            found = await self._consumer.offsets_for_times({tp: ms for tp in self.partitions})
            starts = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in self.partitions}
        for tp in self.partitions:
            self._consumer.seek(tp, starts[tp])
        self._starts = starts
        return sum(ends[tp] - starts[tp] for tp in self.partitions)

    async def backlog(self) -> int:
        """Messages between the current position and the end, now."""
        ends = await self._consumer.end_offsets(self.partitions)
        positions = [await self._consumer.position(tp) for tp in self.partitions]
        return sum(ends[tp] - pos for tp, pos in zip(self.partitions, positions, strict=True))

    async def total(self) -> int:
        """Messages from the start offsets to the end, now (grows with the live stream)."""
        ends = await self._consumer.end_offsets(self.partitions)
        return sum(ends[tp] - self._starts[tp] for tp in self.partitions)

    async def batches(self, timeout_ms: int = 500) -> list[Any]:
        """The next messages (possibly none)."""
        got = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=200)
        messages = [m for msgs in got.values() for m in msgs]
        messages.sort(key=lambda m: (m.partition, m.offset))
        self.read += len(messages)
        return messages

    async def commit(self) -> None:
        """Record progress under the replay's group (visible to kafka-consumer-groups)."""
        await self._consumer.commit()

    async def stop(self) -> None:
        """Leave."""
        await self._consumer.stop()


def _source(m: Any) -> SourceRef:
    return SourceRef(
        topic=m.topic, partition=m.partition, offset=m.offset, timestamp_ms=m.timestamp
    )


async def replay(
    settings: Settings,
    mode: Mode,
    start: Start,
    novel: str | None,
    tick: Tick,
    wait_seconds: float = 1.0,
) -> ReplaySummary:
    """Run a replay to the end (see the module docstring)."""
    began = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    full = start == "earliest" and novel is None
    model, dimension = await asyncio.to_thread(embedder_identity, settings)
    alias_store = vector_store(settings)
    await alias_store.ensure_collection(model, dimension)
    target = f"{collection_for_model(settings.milvus_collection, model)}__{stamp}" if full else None
    summary = ReplaySummary(mode=mode, scope="full rebuild" if full else "in place")
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    store = MilvusVectorStore(settings.milvus_url, target, token) if target else alias_store
    if target:
        await alias_store.create_collection(target, dimension)
        summary.collection = target
    ledger = await open_ledger(settings, scope=target)
    dlq = DiscardDeadLetters()
    group = f"{settings.app_id}-replay-{stamp}"
    try:
        if mode == "reembed":
            await _reembed(
                settings,
                summary,
                start,
                novel,
                target,
                ledger,
                store,
                dlq,
                group,
                model,
                tick,
                wait_seconds,
                alias_store,
            )
        else:
            await _resink(
                settings,
                summary,
                start,
                novel,
                target,
                ledger,
                store,
                dlq,
                group,
                tick,
                wait_seconds,
                alias_store,
            )
    finally:
        summary.invalid_skipped = dlq.count
        summary.seconds = round(time.monotonic() - began, 1)
        await ledger.close()
        if store is not alias_store:
            await store.close()
        await alias_store.close()
    return summary


async def _reembed(
    settings: Settings,
    summary: ReplaySummary,
    start: Start,
    novel: str | None,
    target: str | None,
    ledger: Ledger,
    store: Any,
    dlq: DiscardDeadLetters,
    group: str,
    model: str,
    tick: Tick,
    wait_seconds: float,
    alias_store: MilvusVectorStore,
) -> None:
    pv = f"{pipeline_version(model, chunking_policy(settings))}+replay{group.rsplit('-', 1)[1]}"
    summary.pipeline_version = pv
    submitter = PrefectFlowSubmitter(settings.deployment)
    publisher = KafkaResultPublisher(
        settings.topic_embeddings, client_config(settings), settings.max_result_bytes
    )
    agent = ChapterAgent(
        submitter=submitter,
        results=publisher,
        dead_letters=dlq,
        ledger=ledger,
        pipeline_version=pv,
        max_text_bytes=settings.max_text_bytes,
        max_in_flight=settings.in_flight_bound,
        target=target,
    )
    sink = ResultAgent(store=store, ledger=ledger, dead_letters=dlq, target=target)
    events = TopicReader(settings, settings.topic_events, group)
    results = TopicReader(settings, settings.topic_embeddings, f"{group}-results")
    await events.start(start)
    await results.start("end")  # a rebuild's results can only appear from now on

    async def feed(messages: list[Any]) -> None:
        for m in messages:
            if novel is not None and m.key != novel.encode():
                summary.skipped_other_novels += 1
                continue
            if await agent.handle(m.key, m.value, _source(m)) is not None:
                summary.runs_submitted += 1

    async def drain_results() -> None:
        batch = await results.batches(timeout_ms=200)
        if batch:
            summary.results_applied += await sink.handle_batch(
                [ResultMessage(m.key, m.value, _source(m)) for m in batch]
            )
            await results.commit()

    try:
        await _pump(
            events,
            feed,
            tick,
            follow=target is not None,
            summary=summary,
            background=drain_results if target else None,
            settled=lambda: _settled(ledger) if target else _true(),
            switch=(lambda: _switch(alias_store, target, summary)) if target else None,
            wait_seconds=wait_seconds,
        )
    finally:
        await events.stop()
        await results.stop()
        await submitter.close()
        await publisher.close()


async def _resink(
    settings: Settings,
    summary: ReplaySummary,
    start: Start,
    novel: str | None,
    target: str | None,
    ledger: Ledger,
    store: Any,
    dlq: DiscardDeadLetters,
    group: str,
    tick: Tick,
    wait_seconds: float,
    alias_store: MilvusVectorStore,
) -> None:
    sink = ResultAgent(store=store, ledger=ledger, dead_letters=dlq, target=None)
    results = TopicReader(settings, settings.topic_embeddings, group)
    await results.start(start)

    async def feed(messages: list[Any]) -> None:
        chosen = [m for m in messages if novel is None or m.key == novel.encode()]
        summary.skipped_other_novels += len(messages) - len(chosen)
        if chosen:
            summary.results_applied += await sink.handle_batch(
                [ResultMessage(m.key, m.value, _source(m)) for m in chosen]
            )

    try:
        await _pump(
            results,
            feed,
            tick,
            follow=target is not None,
            summary=summary,
            background=None,
            settled=_true,
            switch=(lambda: _switch(alias_store, target, summary)) if target else None,
            wait_seconds=wait_seconds,
        )
    finally:
        await results.stop()


async def _true() -> bool:
    return True


async def _settled(ledger: Ledger) -> bool:
    """Every chapter the rebuild submitted has its result applied (or failed)."""
    return (await ledger.counts())["pending"] == 0


async def _switch(
    alias_store: MilvusVectorStore, target: str | None, summary: ReplaySummary
) -> None:
    assert target is not None
    summary.previous_collection = await alias_store.point_alias(target)
    log.info("alias now points at %s (was %s)", target, summary.previous_collection)


async def _pump(
    reader: TopicReader,
    feed: Callable[[list[Any]], Awaitable[None]],
    tick: Tick,
    *,
    follow: bool,
    summary: ReplaySummary,
    background: Callable[[], Awaitable[None]] | None,
    settled: Callable[[], Awaitable[bool]],
    switch: Callable[[], Awaitable[None]] | None,
    wait_seconds: float,
) -> None:
    """Read and feed until caught up; a full rebuild then switches and catches up again."""
    switched = False
    while True:
        messages = await reader.batches()
        if messages:
            await feed(messages)
            await reader.commit()
        if background is not None:
            await background()
        summary.read = reader.read
        tick(reader.read, await reader.total())
        if messages or await reader.backlog() > 0:
            continue
        if not follow:
            return  # in place: done at the end of the log as it was
        if not await settled():
            await asyncio.sleep(wait_seconds)
            continue
        if switched:
            return
        assert switch is not None
        await switch()
        switched = True  # one more round: events that raced the switch
