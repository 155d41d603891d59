"""The flow's reader of input events by position, against the real broker.

A warm runner reads one event per run through one long-lived consumer: reads follow each
other on the same partition, jump back and across partitions, and meet offsets that the
log no longer (or does not yet) hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from schemas import EventUnavailable, SourceRef
from streams.wiring import build_event_source
from tests.event_source_contract import CONTRACT, Log
from tests.integration.harness import Stack


async def _topic_with_messages(stack: Stack, topic: str) -> dict[tuple[int, int], bytes]:
    """Three messages on partition 0 and two on partition 1: (partition, offset) -> value."""
    admin = AIOKafkaAdminClient(**stack.kafka.client_config())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**stack.kafka.client_config(), acks="all")
    await producer.start()
    sent: dict[tuple[int, int], bytes] = {}
    try:
        for partition, count in ((0, 3), (1, 2)):
            for i in range(count):
                value = f"p{partition}-m{i}-{uuid.uuid4().hex}".encode()
                meta = await producer.send_and_wait(topic, value, key=b"k", partition=partition)
                sent[(partition, meta.offset)] = value
    finally:
        await producer.stop()
    return sent


async def _delete_before(stack: Stack, topic: str, partition: int, offset: int) -> None:
    admin = AIOKafkaAdminClient(**stack.kafka.client_config())
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


def test_reads_by_position_in_any_order_and_refuses_what_the_log_does_not_hold(
    stack: Stack,
) -> None:
    topic = f"test-source-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        sent = await _topic_with_messages(stack, topic)
        source = build_event_source(stack.settings)
        try:
            # One after another on one partition, back again, across, and the same twice:
            # each read gets exactly the message at its position.
            for partition, offset in [(0, 0), (0, 1), (0, 2), (0, 0), (1, 1), (1, 0), (0, 2)]:
                key, value = await source.read(
                    SourceRef(topic=topic, partition=partition, offset=offset)
                )
                assert (key, value) == (b"k", sent[(partition, offset)])
            with pytest.raises(EventUnavailable, match="not in the log"):
                await source.read(SourceRef(topic=topic, partition=0, offset=3))  # not yet
            await _delete_before(stack, topic, 0, 2)  # what retention does
            with pytest.raises(EventUnavailable, match="not in the log"):
                await source.read(SourceRef(topic=topic, partition=0, offset=1))
            # A refused read leaves the reader usable.
            _, value = await source.read(SourceRef(topic=topic, partition=0, offset=2))
            assert value == sent[(0, 2)]
        finally:
            await source.close()

    asyncio.run(scenario())


class KafkaLog:
    """A fresh topic of two partitions on the stack's broker, read by the real adapter."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.topic = f"contract-source-{uuid.uuid4().hex[:8]}"
        self.source = build_event_source(stack.settings)
        self.producer = AIOKafkaProducer(**stack.kafka.client_config(), acks="all")

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(**self.stack.kafka.client_config())
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(self.topic, num_partitions=2, replication_factor=1)]
            )
        finally:
            await admin.close()
        await self.producer.start()

    async def append(self, partition: int, key: bytes, value: bytes) -> int:
        meta = await self.producer.send_and_wait(self.topic, value, key=key, partition=partition)
        return int(meta.offset)

    async def trim(self, partition: int, before: int) -> None:
        await _delete_before(self.stack, self.topic, partition, before)

    async def close(self) -> None:
        await self.producer.stop()
        await self.source.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_kafka_event_source_contract(stack: Stack, check: Callable[[Log], Awaitable[None]]) -> None:
    async def run() -> None:
        log = KafkaLog(stack)
        await log.start()
        try:
            await check(log)
        finally:
            await log.close()

    asyncio.run(run())
