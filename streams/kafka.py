"""Kafka plumbing shared by the worker and the CLI: client config, topics, dead letters."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import PublishError, ScribeError, ServiceUnavailable, SourceRef
from schemas.dead_letters import error_headers
from streams.settings import Settings

log = logging.getLogger("scribe.kafka")


def client_config(settings: Settings) -> dict[str, Any]:
    """aiokafka connection settings (security options join here)."""
    return {"bootstrap_servers": settings.bootstrap_servers}


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics scribe-stream uses, with their partition counts and configs."""
    n, rf = settings.topic_partitions, settings.topic_replication
    # Kafka is the source of truth: events and results are kept forever (replay rebuilds
    # every derived store from them), dead letters too (nothing is lost).
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    big = {**forever, "max.message.bytes": str(settings.max_result_bytes)}
    return [
        NewTopic(
            settings.topic_events,
            n,
            rf,
            topic_configs={
                **forever,
                "max.message.bytes": str(max(settings.max_text_bytes * 2, 1024 * 1024)),
            },
        ),
        NewTopic(settings.topic_embeddings, n, rf, topic_configs=big),
        NewTopic(settings.topic_dlq, n, rf, topic_configs=big),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics (Faust must not auto-create them); return the created names."""
    admin = AIOKafkaAdminClient(**client_config(settings))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise ServiceUnavailable(
            f"Kafka at {settings.bootstrap_servers} unreachable: {exc}"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def start_producer(settings: Settings) -> AIOKafkaProducer:
    """An idempotent, acks=all producer for scribe's own writes."""
    producer = AIOKafkaProducer(
        **client_config(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_result_bytes,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise ServiceUnavailable(
            f"Kafka at {settings.bootstrap_servers} unreachable: {exc}"
        ) from exc
    return producer


class DeadLetterTopic:
    """Writes the original key and bytes to the DLQ topic with the reason in headers."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def dead_letter(
        self, *, key: bytes | None, value: bytes, source: SourceRef, error: ScribeError
    ) -> None:
        """Send and wait for the acknowledgement."""
        try:
            await self._producer.send_and_wait(
                self._topic, value=value, key=key, headers=error_headers(source, error)
            )
        except KafkaError as exc:
            raise PublishError(f"dead-letter write to {self._topic} failed: {exc}") from exc


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """Partition numbers of ``topic`` (empty if it does not exist), from the broker."""
    admin = AIOKafkaAdminClient(**client_config(settings))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise ServiceUnavailable(
            f"Kafka at {settings.bootstrap_servers} unreachable: {exc}"
        ) from exc
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return sorted(int(p["partition"]) for p in entry.get("partitions", []))
    return []
