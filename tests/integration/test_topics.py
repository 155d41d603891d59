"""Topics scribe creates are ready to write when ``ensure_topics`` returns; the result
publisher and dead-letters contracts (tests/publisher_contract.py,
tests/dead_letters_contract.py) on the real broker."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.dead_letters import DeadLetter, as_parked
from streams.adapters.kafka.client import DeadLetterTopic
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.publisher import KafkaResultPublisher
from streams.topics import ensure_scribe_topics
from tests.dead_letters_contract import CONTRACT as DEAD_LETTERS_CONTRACT
from tests.dead_letters_contract import Letter, Parking
from tests.integration.harness import Stack
from tests.publisher_contract import CONTRACT as PUBLISHER_CONTRACT
from tests.publisher_contract import MAX_BYTES, Message, Published

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
        kafka = KafkaConnection.from_settings(settings)
        producer = AIOKafkaProducer(**kafka.client_config(), acks="all")
        await producer.start()  # ready before the topics exist: it writes at once
        try:
            created = await ensure_scribe_topics(settings)
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


def test_a_replay_reader_whose_records_are_deleted_under_it_reads_on_from_the_log_start(
    stack: Stack,
) -> None:
    """Retention (or ``delete_records``) can take the records a replay is about to read.
    aiokafka's default answer to the out-of-range position is the log's *end*: the replay
    read nothing more of that partition and a rebuild silently missed what was left. It
    now goes on from the log's new start, and knows it did not read what was deleted."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

    from streams.adapters.kafka.topic_reader import TopicReader

    topic = f"reader-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[int], bool, bool]:
        admin = AIOKafkaAdminClient(**stack.kafka.client_config())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
            producer = AIOKafkaProducer(**stack.kafka.client_config(), acks="all")
            await producer.start()
            try:
                for i in range(10):
                    await producer.send_and_wait(topic, str(i).encode(), partition=0)
            finally:
                await producer.stop()
            group, max_bytes = f"reader-{uuid.uuid4().hex[:8]}", stack.settings.max_result_bytes
            reader = TopicReader(stack.kafka, topic, group, max_bytes)
            await reader.start("earliest")  # positioned at 0, the snapshot ends at 10
            try:
                await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(6)})
                # The consumer may have fetched ahead before the deletion; at offset 0
                # again, its next fetch meets the deleted range, as a slower one would.
                reader._consumer.seek(TopicPartition(topic, 0), 0)
                offsets: list[int] = []
                while await reader.backlog() > 0:
                    offsets += [m.offset for m in await reader.batches()]
                return offsets, reader.has_read(0, 7), reader.has_read(0, 2)
            finally:
                await reader.stop()
        finally:
            await admin.close()

    offsets, read_7, read_2 = asyncio.run(scenario())
    assert offsets == [6, 7, 8, 9]
    assert read_7 and not read_2


async def _create_topics(config: dict[str, Any], topics: list[str]) -> None:
    """One-partition topics on the stack's broker."""
    admin = AIOKafkaAdminClient(**config)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]
        )
    finally:
        await admin.close()


async def _read_topic(config: dict[str, Any], topic: str) -> list[Message]:
    """Every message of a one-partition topic, as a consumer without a group reads it."""
    consumer = AIOKafkaConsumer(**config, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Message] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                out += [(r.key, r.value, list(r.headers or ())) for r in records]
        return out
    finally:
        await consumer.stop()


class KafkaPublished:
    """The Kafka publisher on fresh topics of the stack's broker, read back by a consumer."""

    def __init__(self, stack: Stack) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.config = stack.kafka.client_config()
        self.topics = {name: f"contract-{name}-{suffix}" for name in ("results", "dlq", "failures")}
        self.publisher = KafkaResultPublisher(
            self.topics["results"],
            stack.kafka,
            MAX_BYTES,
            dlq_topic=self.topics["dlq"],
            failures_topic=self.topics["failures"],
        )

    async def start(self) -> None:
        await _create_topics(self.config, list(self.topics.values()))

    async def results(self) -> list[Message]:
        return await _read_topic(self.config, self.topics["results"])

    async def dead_letters(self) -> list[Message]:
        return await _read_topic(self.config, self.topics["dlq"])

    async def failures(self) -> list[Message]:
        return await _read_topic(self.config, self.topics["failures"])


@pytest.mark.parametrize("check", PUBLISHER_CONTRACT, ids=lambda c: c.__name__)
def test_kafka_publisher_contract(
    stack: Stack, check: Callable[[Published], Awaitable[None]]
) -> None:
    async def run() -> None:
        published = KafkaPublished(stack)
        await published.start()
        try:
            await check(published)
        finally:
            await published.publisher.close()

    asyncio.run(run())


class KafkaParking:
    """The DLQ writer on a fresh topic of the stack's broker, read back by a consumer."""

    def __init__(self, stack: Stack) -> None:
        self.config = stack.kafka.client_config()
        self.topic = f"contract-dlq-{uuid.uuid4().hex[:8]}"
        self.producer = AIOKafkaProducer(**self.config, acks="all")
        self.dead_letters = DeadLetterTopic(self.producer, self.topic)

    async def start(self) -> None:
        await _create_topics(self.config, [self.topic])
        await self.producer.start()

    async def letters(self) -> list[Letter]:
        return [
            (key, as_parked(value, headers), DeadLetter.from_headers(headers))
            for key, value, headers in await _read_topic(self.config, self.topic)
        ]


@pytest.mark.parametrize("check", DEAD_LETTERS_CONTRACT, ids=lambda c: c.__name__)
def test_kafka_dead_letters_contract(
    stack: Stack, check: Callable[[Parking], Awaitable[None]]
) -> None:
    async def run() -> None:
        parking = KafkaParking(stack)
        await parking.start()
        try:
            await check(parking)
        finally:
            await parking.producer.stop()

    asyncio.run(run())
