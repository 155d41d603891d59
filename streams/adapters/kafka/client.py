"""Kafka plumbing shared by the worker and the CLI: admin, topics, producer, dead letters.

Every function takes a :class:`~streams.adapters.kafka.connection.KafkaConnection`
(how to reach the brokers) and the values of its own task, never the whole settings.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import PublishError, ScribeError, ServiceUnavailable, SourceRef
from schemas.dead_letters import error_headers, storable
from streams.adapters.kafka.connection import KafkaConnection

log = logging.getLogger("scribe.kafka")


@contextlib.asynccontextmanager
async def admin_client(connection: KafkaConnection) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; :class:`ServiceUnavailable` when no broker answers."""
    admin = AIOKafkaAdminClient(**connection.client_config())
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise ServiceUnavailable(
            f"Kafka at {connection.bootstrap_servers} unreachable: {exc}"
        ) from exc
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(connection: KafkaConnection, specs: Sequence[NewTopic]) -> list[str]:
    """Create the topics of ``specs`` that are missing (Faust must not auto-create them,
    see :func:`streams.topics.topic_specs`); return the created names."""
    async with admin_client(connection) as admin:
        existing = set(await admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
    if missing:
        await _until_served(connection, missing)
    return [t.name for t in missing]


async def _until_served(connection: KafkaConnection, topics: list[NewTopic]) -> None:
    """Return once every partition of ``topics`` answers its leader's offset request.

    A partition's leader is in the metadata a moment before it serves; a write in that
    moment is refused (NOT_LEADER), and the producer retries with a WARNING, which is
    what a newcomer's first ``scribe dev --sample`` printed. The consumer's offset lookup
    retries the same refusal quietly, and ends when the leaders serve.
    """
    consumer = AIOKafkaConsumer(**connection.client_config(), enable_auto_commit=False)
    try:
        await consumer.start()
        parts = [TopicPartition(t.name, p) for t in topics for p in range(t.num_partitions)]
        await consumer.end_offsets(parts)
    except KafkaError as exc:
        raise ServiceUnavailable(f"new topics not served yet: {exc}") from exc
    finally:
        await consumer.stop()


async def start_producer(connection: KafkaConnection, max_request_size: int) -> AIOKafkaProducer:
    """An idempotent, acks=all producer for scribe's own writes, of messages up to
    ``max_request_size`` bytes (``SCRIBE_MAX_RESULT_BYTES``)."""
    producer = AIOKafkaProducer(
        **connection.client_config(),
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_size,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise ServiceUnavailable(
            f"Kafka at {connection.bootstrap_servers} unreachable: {exc}"
        ) from exc
    return producer


class DeadLetterTopic:
    """Writes the original key and bytes to the DLQ topic with the reason in headers."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Send and wait for the acknowledgement."""
        stored, headers = storable(key, value, error_headers(source, error, redrive))
        try:
            await self._producer.send_and_wait(self._topic, value=stored, key=key, headers=headers)
        except KafkaError as exc:
            raise PublishError(f"dead-letter write to {self._topic} failed: {exc}") from exc


async def partitions_of(connection: KafkaConnection, topic: str) -> list[int]:
    """Partition numbers of ``topic`` (empty if it does not exist), from the broker."""
    async with admin_client(connection) as admin:
        described = await admin.describe_topics([topic])
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return sorted(int(p["partition"]) for p in entry.get("partitions", []))
    return []
