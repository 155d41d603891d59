"""The flow's reader of input events by position, against the real broker.

A warm runner reads one event per run through one long-lived consumer: reads follow each
other on the same partition, jump back and across partitions, and meet offsets that the
log no longer (or does not yet) hold.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from schemas import EventUnavailable, SourceRef
from streams.adapters.kafka.client import client_config
from streams.wiring import build_event_source
from tests.integration.harness import Stack


async def _topic_with_messages(stack: Stack, topic: str) -> dict[tuple[int, int], bytes]:
    """Three messages on partition 0 and two on partition 1: (partition, offset) -> value."""
    admin = AIOKafkaAdminClient(**client_config(stack.settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**client_config(stack.settings), acks="all")
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
    admin = AIOKafkaAdminClient(**client_config(stack.settings))
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
