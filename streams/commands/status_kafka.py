"""The Kafka section of ``scribe status``: offsets of the worker's group, the DLQ, and how
long the oldest unconsumed result has waited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.adapters.kafka.client import admin_client, partitions_of
from streams.adapters.kafka.connection import KafkaConnection
from streams.settings import Settings

#: How long to wait for the first waiting record of each lagging results partition.
READ_SECONDS = 5.0


async def kafka_report(settings: Settings, waited: bool = False) -> dict[str, Any]:
    """Committed and end offsets per partition of the worker's group and the DLQ size;
    with ``waited``, also, per results partition with lag, when its oldest waiting result
    was written (``results_waiting``; the worker's lag gauge does without: no reads)."""
    kafka = KafkaConnection.from_settings(settings)
    async with admin_client(kafka) as admin:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    consumer = AIOKafkaConsumer(**kafka.client_config(), group_id=None)
    await consumer.start()
    results = settings.topic_embeddings
    try:
        partitions: list[dict[str, Any]] = []
        for topic in (settings.topic_events, results):
            tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
            ends = await consumer.end_offsets(tps) if tps else {}
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                partitions.append(
                    {
                        "topic": topic,
                        "partition": tp.partition,
                        "committed": offset,
                        "end": ends[tp],
                        "lag": ends[tp] - (offset or 0),
                    }
                )
        lagging = [p for p in partitions if p["topic"] == results and p["lag"] > 0]
        results_waiting = await _waiting(consumer, results, lagging) if waited else []
        dlq = [
            TopicPartition(settings.topic_dlq, p)
            for p in await partitions_of(kafka, settings.topic_dlq)
        ]
        dlq_size = 0
        if dlq:
            ends, starts = await consumer.end_offsets(dlq), await consumer.beginning_offsets(dlq)
            dlq_size = sum(ends[tp] - starts[tp] for tp in dlq)
        report = {"group": settings.app_id, "partitions": partitions, "dlq_size": dlq_size}
        return {**report, "results_waiting": results_waiting} if waited else report
    finally:
        await consumer.stop()


async def _waiting(
    consumer: AIOKafkaConsumer, topic: str, lagging: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``results_waiting`` entries: partition, lag and the oldest waiting result's time."""
    at = await oldest_waiting(
        consumer, {TopicPartition(topic, p["partition"]): p["committed"] or 0 for p in lagging}
    )
    written = {tp.partition: when.isoformat() for tp, when in at.items()}
    return [
        {"partition": p["partition"], "lag": p["lag"], "oldest_at": written.get(p["partition"])}
        for p in lagging
    ]


async def oldest_waiting(
    consumer: AIOKafkaConsumer, committed: dict[TopicPartition, int]
) -> dict[TopicPartition, datetime]:
    """The timestamp of the first record at or after each committed offset (the oldest
    result the group has not consumed); partitions not read within :data:`READ_SECONDS`
    are left out. A committed offset that retention has passed starts at the log's start.
    """
    if not committed:
        return {}
    starts = await consumer.beginning_offsets(list(committed))
    consumer.assign(list(committed))
    for tp, offset in committed.items():
        consumer.seek(tp, max(offset, starts[tp]))
    found: dict[TopicPartition, datetime] = {}
    deadline = asyncio.get_running_loop().time() + READ_SECONDS
    while len(found) < len(committed) and asyncio.get_running_loop().time() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            if records and tp not in found:
                found[tp] = datetime.fromtimestamp(records[0].timestamp / 1000, UTC)
                consumer.pause(tp)
    return found
