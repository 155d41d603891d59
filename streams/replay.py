"""``scribe replay``: reprocess history from Kafka, beside the running workers.

Two modes, two scopes:

* ``reembed`` runs the flows again under a new pipeline version; ``resink`` rebuilds the
  index from the results topic alone, without embedding.
* A *full* replay (``--from earliest``, all novels) builds a **new physical collection**
  (with its own ledger scope) while search keeps using the old one; when it has caught up
  with the live stream it points the alias at the new collection atomically, catches up
  once more (events that raced the switch), and keeps the old collection until
  ``scribe index drop``. A *partial* replay (``--novel`` or ``--from <time>``) works **in
  place** on the live index, where the ledger's newest-wins rules keep it correct.

A replay never writes the index itself. The worker's result agent stays the one writer
of every novel: re-embedded chapters reach it through the results topic like any flow's
result, and a resink re-publishes results there (with the rebuild's collection as their
target) and waits until the worker has applied them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.chapter_agent import ChapterAgent
from agents.milvus_store import MilvusVectorStore
from agents.vector_store import collection_for_model
from prefect_bridge.publisher import KafkaResultPublisher
from prefect_bridge.runtime import pipeline_version
from prefect_bridge.submitter import PrefectFlowSubmitter
from schemas import ChapterEmbedded, InvalidEvent, ScribeError, SourceRef, parse_result
from schemas.dead_letters import message_source
from streams.kafka import admin_client, client_config, partitions_of, start_producer
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
    results_sent: int = 0
    invalid_skipped: int = 0
    collection: str | None = None
    previous_collection: str | None = None
    pipeline_version: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class TopicReader:
    """Reads one topic from chosen start offsets up to a snapshot of its end offsets.

    The snapshot bounds a round: a resink publishes to the topic it reads, and a replay of
    the input topic must end although the live stream goes on; :meth:`extend` moves the
    snapshot to the end of now for one more round (after a rebuild's alias switch).
    """

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
        self._starts: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}

    async def start(self, start: Start) -> int:
        """Assign every partition, seek to ``start``; return messages up to the end now."""
        await self._consumer.start()
        parts = await partitions_of(self._settings, self._topic)
        self.partitions = [TopicPartition(self._topic, p) for p in parts]
        self._consumer.assign(self.partitions)
        ends = await self._consumer.end_offsets(self.partitions)
        if start == "earliest":
            starts = await self._consumer.beginning_offsets(self.partitions)
        else:
            ms = int(start.timestamp() * 1000)
            found = await self._consumer.offsets_for_times({tp: ms for tp in self.partitions})
            starts = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in self.partitions}
        for tp in self.partitions:
            self._consumer.seek(tp, starts[tp])
        self._starts, self._ends = starts, ends
        return await self.total()

    async def extend(self) -> None:
        """One more round: read on to the end offsets of now."""
        self._ends = await self._consumer.end_offsets(self.partitions)

    async def backlog(self) -> int:
        """Messages between the current position and the snapshot's end."""
        positions = [await self._consumer.position(tp) for tp in self.partitions]
        return sum(
            max(0, self._ends[tp] - pos) for tp, pos in zip(self.partitions, positions, strict=True)
        )

    async def total(self) -> int:
        """Messages from the start offsets to the snapshot's end."""
        return sum(self._ends[tp] - self._starts[tp] for tp in self.partitions)

    async def batches(self, timeout_ms: int = 500) -> list[Any]:
        """The next messages before the snapshot's end (possibly none)."""
        waiting = [
            tp for tp in self.partitions if await self._consumer.position(tp) < self._ends[tp]
        ]
        if not waiting:
            return []
        got = await self._consumer.getmany(*waiting, timeout_ms=timeout_ms, max_records=200)
        messages = []
        for tp, msgs in got.items():
            inside = [m for m in msgs if m.offset < self._ends[tp]]
            messages += inside
            if len(inside) < len(msgs):  # read past the snapshot: come back there next round
                self._consumer.seek(tp, self._ends[tp])
        messages.sort(key=lambda m: (m.partition, m.offset))
        self.read += len(messages)
        return messages

    async def commit(self) -> None:
        """Record progress under the replay's group (visible to kafka-consumer-groups)."""
        await self._consumer.commit()

    async def stop(self) -> None:
        """Leave."""
        await self._consumer.stop()


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
    admin = vector_store(settings)
    model: str | None
    if mode == "resink":  # rebuilds what the live index holds: no model is loaded
        live, model, dimension = await admin.shape()
    else:
        embedder_model, dimension = await asyncio.to_thread(embedder_identity, settings)
        live = await admin.ensure_collection(embedder_model, dimension)
        model = embedder_model
    base = collection_for_model(settings.milvus_collection, model or "resink")
    target = f"{base}__{stamp}" if full else None
    summary = ReplaySummary(mode=mode, scope="full rebuild" if full else "in place")
    if target:
        await admin.create_collection(target, dimension)
        summary.collection = target
    plan = _Plan(settings, summary, start, novel, target, live, admin, tick, wait_seconds)
    group = f"{settings.app_id}-replay-{stamp}"
    try:
        if mode == "reembed":
            assert model is not None
            await _reembed(plan, group, model)
        else:
            await _resink(plan, group, model, dimension)
    finally:
        summary.seconds = round(time.monotonic() - began, 1)
        await admin.close()
    return summary


@dataclass
class _Plan:
    """What every replay step needs."""

    settings: Settings
    summary: ReplaySummary
    start: Start
    novel: str | None
    target: str | None
    live: str
    admin: MilvusVectorStore
    tick: Tick
    wait_seconds: float

    def wanted(self, key: bytes | None) -> bool:
        """Whether a message of this key is the replay's (``--novel``), counting the rest."""
        if self.novel is None or key == self.novel.encode():
            return True
        self.summary.skipped_other_novels += 1
        return False

    async def switch(self) -> None:
        """Point the alias at the rebuilt collection."""
        assert self.target is not None
        self.summary.previous_collection = await self.admin.point_alias(self.target)
        log.info("alias now points at %s (was %s)", self.target, self.summary.previous_collection)


async def _reembed(plan: _Plan, group: str, model: str) -> None:
    settings, summary = plan.settings, plan.summary
    pv = f"{pipeline_version(model, chunking_policy(settings))}+replay{group.rsplit('-', 1)[1]}"
    summary.pipeline_version = pv
    # The rebuild's own books (its pending submissions), or the live collection's.
    ledger = await open_ledger(settings, scope=plan.target or plan.live)
    submitter = PrefectFlowSubmitter(settings.deployment)
    publisher = KafkaResultPublisher(
        settings.topic_embeddings, client_config(settings), settings.max_result_bytes
    )
    dlq = DiscardDeadLetters()
    agent = ChapterAgent(
        submitter=submitter,
        results=publisher,
        dead_letters=dlq,
        ledger=ledger,
        pipeline_version=pv,
        max_text_bytes=settings.max_text_bytes,
        max_in_flight=settings.in_flight_bound,
        target=plan.target,
    )
    events = TopicReader(settings, settings.topic_events, group)
    await events.start(plan.start)

    async def feed(messages: list[Any]) -> None:
        for m in messages:
            if not plan.wanted(m.key):
                continue
            source, redrive = message_source(
                m.topic, m.partition, m.offset, m.timestamp, list(m.headers or ())
            )
            if await agent.handle(m.key, m.value, source, redrive) is not None:
                summary.runs_submitted += 1

    async def settled() -> bool:
        """Every chapter the rebuild submitted has its result applied (or failed)."""
        return (await ledger.counts())["pending"] == 0

    try:
        await _pump(plan, events, feed, settled)
    finally:
        summary.invalid_skipped = dlq.count
        await events.stop()
        await submitter.close()
        await publisher.close()
        await ledger.close()


class _Feeder:
    """Re-publishes results to the results topic and waits until the worker applied them."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self._last: dict[int, int] = {}  # partition -> offset of the last message sent

    async def send(self, key: bytes | None, value: bytes) -> None:
        """Publish one result (acks=all) and remember its position."""
        sent = await self._producer.send_and_wait(
            self._settings.topic_embeddings, value=value, key=key
        )
        self._last[sent.partition] = max(sent.offset, self._last.get(sent.partition, -1))

    async def behind(self) -> int:
        """How many of the sent results the worker's group has not committed yet."""
        async with admin_client(self._settings) as admin:
            committed = await admin.list_consumer_group_offsets(self._settings.app_id)
        behind = 0
        for partition, last in self._last.items():
            meta = committed.get(TopicPartition(self._settings.topic_embeddings, partition))
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            behind += max(0, last + 1 - done)
        return behind

    async def drained(self, wait_seconds: float, report_every: float = 30.0) -> None:
        """Wait until the worker has applied everything sent (it is the one writer)."""
        waited = 0.0
        while (left := await self.behind()) > 0:
            if waited >= report_every:
                log.warning(
                    "waiting for the worker (group %s) to apply %d results; is it running?",
                    self._settings.app_id,
                    left,
                )
                waited = 0.0
            await asyncio.sleep(wait_seconds)
            waited += wait_seconds


async def _resink(plan: _Plan, group: str, model: str | None, dimension: int) -> None:
    """Feed the results topic to the worker again, for the live index or a rebuild."""
    settings, summary = plan.settings, plan.summary
    results = TopicReader(settings, settings.topic_embeddings, group)
    await results.start(plan.start)
    producer = await start_producer(settings)
    feeder = _Feeder(settings, producer)

    async def feed(messages: list[Any]) -> None:
        for m in messages:
            value = _resent(m.value, plan, model, dimension) if plan.wanted(m.key) else None
            if value is not None:
                await feeder.send(m.key, value)
                summary.results_sent += 1

    async def settled() -> bool:
        await feeder.drained(plan.wait_seconds)
        return True

    try:
        await _pump(plan, results, feed, settled)
        await feeder.drained(plan.wait_seconds)
    finally:
        await results.stop()
        await producer.stop()


def _resent(value: bytes, plan: _Plan, model: str | None, dimension: int) -> bytes | None:
    """The message to re-publish for one result, or ``None`` to leave it out.

    Kept: results of the live index (no target, or the collection that is live now), of
    the current model; they are addressed to the rebuild's collection in a full resink.
    Left out: invalid messages (the worker dead-lettered them), other rebuilds' results,
    and embeddings of another model (a reembed replaced them).
    """
    try:
        result = parse_result(value)
    except InvalidEvent:
        plan.summary.invalid_skipped += 1
        return None
    if result.target not in (None, plan.live):
        return None
    if isinstance(result, ChapterEmbedded) and (
        result.model != model if model is not None else result.dimension != dimension
    ):
        return None
    if result.target == plan.target:
        return value
    return result.model_copy(update={"target": plan.target}).model_dump_json().encode()


async def _pump(
    plan: _Plan,
    reader: TopicReader,
    feed: Callable[[list[Any]], Awaitable[None]],
    settled: Callable[[], Awaitable[bool]],
) -> None:
    """Read and feed until caught up; a full rebuild then switches and catches up again."""
    switched = False
    while True:
        messages = await reader.batches()
        if messages:
            await feed(messages)
            await reader.commit()
        plan.summary.read = reader.read
        plan.tick(reader.read, await reader.total())
        if messages or await reader.backlog() > 0:
            continue
        if plan.target is None:
            return  # in place: done at the end of the log as it was
        if not await settled():
            await asyncio.sleep(plan.wait_seconds)
            continue
        if switched:
            return
        await plan.switch()
        switched = True  # one more round: events that raced the switch
        await reader.extend()
