"""Kafka plumbing shared by the worker and the CLI: client config, topics, dead letters."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from schemas import PublishError, ScribeError, ServiceUnavailable, SourceRef
from schemas.dead_letters import error_headers, storable
from streams.settings import Settings

log = logging.getLogger("scribe.kafka")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL, from the CA bundle and optional client cert."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    password = settings.kafka_ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        password=password.get_secret_value() if password else None,
    )
    return context


def client_config(settings: Settings) -> dict[str, Any]:
    """aiokafka connection settings: brokers, TLS and SASL, and how often metadata is
    refreshed (a consumer resetting its position asks the leader it knows, and aiokafka
    does not refresh metadata when that one is no longer the leader: defect 28)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "metadata_max_age_ms": int(settings.kafka_metadata_max_age_seconds * 1000),
    }
    context = ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def faust_credentials(settings: Settings) -> Any:
    """The same security settings as Faust ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


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
        NewTopic(settings.topic_failures, n, rf, topic_configs=forever),
    ]


@contextlib.asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; :class:`ServiceUnavailable` when no broker answers."""
    admin = AIOKafkaAdminClient(**client_config(settings))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise ServiceUnavailable(
            f"Kafka at {settings.bootstrap_servers} unreachable: {exc}"
        ) from exc
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics (Faust must not auto-create them); return the created names."""
    async with admin_client(settings) as admin:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
    if missing:
        await _until_served(settings, missing)
    return [t.name for t in missing]


async def _until_served(settings: Settings, topics: list[NewTopic]) -> None:
    """Return once every partition of ``topics`` answers its leader's offset request.

    A partition's leader is in the metadata a moment before it serves; a write in that
    moment is refused (NOT_LEADER), and the producer retries with a WARNING, which is
    what a newcomer's first ``scribe dev --sample`` printed. The consumer's offset lookup
    retries the same refusal quietly, and ends when the leaders serve.
    """
    consumer = AIOKafkaConsumer(**client_config(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        parts = [TopicPartition(t.name, p) for t in topics for p in range(t.num_partitions)]
        await consumer.end_offsets(parts)
    except KafkaError as exc:
        raise ServiceUnavailable(f"new topics not served yet: {exc}") from exc
    finally:
        await consumer.stop()


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


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """Partition numbers of ``topic`` (empty if it does not exist), from the broker."""
    async with admin_client(settings) as admin:
        described = await admin.describe_topics([topic])
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return sorted(int(p["partition"]) for p in entry.get("partitions", []))
    return []
