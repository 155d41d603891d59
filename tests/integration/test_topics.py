"""Topics scribe creates are ready to write when ``ensure_topics`` returns."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from streams.kafka import client_config, ensure_topics
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration


def test_created_topics_take_writes_without_not_leader_retries(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A newly created partition's leader answers NOT_LEADER for a moment; the producer
    retried and logged a WARNING on the first ``scribe dev --sample``. ``ensure_topics``
    now returns once every partition it created answers."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack.settings.model_copy(
        update={
            "topic_events": f"ready-{suffix}",
            "topic_embeddings": f"ready-{suffix}.embeddings",
            "topic_dlq": f"ready-{suffix}.dlq",
            "topic_failures": f"ready-{suffix}.failures",
            "topic_partitions": 6,
        }
    )

    async def scenario() -> list[str]:
        producer = AIOKafkaProducer(**client_config(settings), acks="all")
        await producer.start()  # ready before the topics exist: it writes at once
        try:
            created = await ensure_topics(settings)
            for topic in created:
                for partition in range(settings.topic_partitions):
                    await producer.send_and_wait(topic, b"x", partition=partition)
        finally:
            await producer.stop()
        return created

    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        created = asyncio.run(scenario())
    assert len(created) == 4
    retried = [r.getMessage() for r in caplog.records if "NotLeader" in r.getMessage()]
    assert not retried, retried
