"""Reading a topic in bounded rounds, and feeding results back to the worker (replays)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.adapters.kafka.client import admin_client, partitions_of
from streams.adapters.kafka.connection import KafkaConnection

log = logging.getLogger("scribe.replay")

#: Where a replay starts: the beginning of the log, or the first message at a time.
Start = Literal["earliest"] | datetime


class TopicReader:
    """Reads one topic from chosen start offsets up to a snapshot of its end offsets.

    The snapshot bounds a round: a resink publishes to the topic it reads, and a replay of
    the input topic must end although the live stream goes on; :meth:`extend` moves the
    snapshot to the end of now for one more round (after a rebuild's alias switch).
    Progress is committed under ``group``; a fetch takes at most ``max_bytes`` per
    partition (the largest message, ``SCRIBE_MAX_RESULT_BYTES``).
    """

    def __init__(self, connection: KafkaConnection, topic: str, group: str, max_bytes: int) -> None:
        self._topic = topic
        self._connection = connection
        self._consumer = AIOKafkaConsumer(
            **connection.client_config(),
            group_id=group,
            enable_auto_commit=False,
            # Records deleted under the reader (retention): go on from the log's new
            # start, not from its end (aiokafka's default), which would skip the rest.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_bytes,
            fetch_max_bytes=max_bytes,
        )
        self.partitions: list[TopicPartition] = []
        self.read = 0
        self._starts: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        #: partition -> [first, next) offsets of the unbroken run delivered last
        self._runs: dict[int, tuple[int, int]] = {}

    async def start(self, start: Start) -> int:
        """Assign every partition, seek to ``start``; return messages up to the end now."""
        await self._consumer.start()
        parts = await partitions_of(self._connection, self._topic)
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

    def has_read(self, partition: int, offset: int) -> bool:
        """Whether this reader has delivered ``offset`` of ``partition`` in its current
        unbroken run (a gap, e.g. records deleted under it, starts a new run)."""
        run = self._runs.get(partition)
        return run is not None and run[0] <= offset < run[1]

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
        for m in messages:
            first, after = self._runs.get(m.partition, (m.offset, m.offset))
            self._runs[m.partition] = (first if m.offset == after else m.offset, m.offset + 1)
        self.read += len(messages)
        return messages

    async def commit(self) -> None:
        """Record progress under the replay's group (visible to kafka-consumer-groups)."""
        await self._consumer.commit()

    async def stop(self) -> None:
        """Leave."""
        await self._consumer.stop()


async def worker_behind(
    connection: KafkaConnection, group: str, topic: str, ends: dict[int, int]
) -> int:
    """How many results of ``topic`` before ``ends`` (partition -> offset) the worker's
    ``group`` has not committed yet: it commits what it applied, so 0 means the index
    holds them."""
    async with admin_client(connection) as admin:
        committed = await admin.list_consumer_group_offsets(group)
    behind = 0
    for partition, end in ends.items():
        meta = committed.get(TopicPartition(topic, partition))
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        behind += max(0, end - done)
    return behind


async def results_end(connection: KafkaConnection, topic: str) -> dict[int, int]:
    """Partition -> end offset of the results ``topic`` now."""
    consumer = AIOKafkaConsumer(**connection.client_config(), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partitions_of(connection, topic)]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


class ResultFeeder:
    """Re-publishes results to the results ``topic`` and waits until the worker (consumer
    ``group``) applied them."""

    def __init__(
        self, connection: KafkaConnection, producer: AIOKafkaProducer, topic: str, group: str
    ) -> None:
        self._connection = connection
        self._producer = producer
        self._topic = topic
        self._group = group
        self._last: dict[int, int] = {}  # partition -> offset of the last message sent

    async def send(
        self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Publish one result (acks=all) and remember its position."""
        sent = await self._producer.send_and_wait(
            self._topic, value=value, key=key, headers=headers
        )
        self._last[sent.partition] = max(sent.offset, self._last.get(sent.partition, -1))

    async def behind(self) -> int:
        """How many of the sent results the worker's group has not committed yet."""
        ends = {p: o + 1 for p, o in self._last.items()}
        return await worker_behind(self._connection, self._group, self._topic, ends)

    async def drained(self, wait_seconds: float, report_every: float = 30.0) -> None:
        """Wait until the worker has applied everything sent (it is the one writer)."""
        waited = 0.0
        while (left := await self.behind()) > 0:
            if waited >= report_every:
                log.warning(
                    "waiting for the worker (group %s) to apply %d results; is it running?",
                    self._group,
                    left,
                )
                waited = 0.0
            await asyncio.sleep(wait_seconds)
            waited += wait_seconds
