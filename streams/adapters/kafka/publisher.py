"""The result publisher on Kafka: aiokafka, idempotent, acks=all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prefect_bridge.publisher import SEND_TIMEOUT_SECONDS, encode_result
from schemas import (
    ChapterProcessingFailed,
    ConfigurationError,
    PublishError,
    ResultEvent,
    ResultTooLarge,
)
from schemas.dead_letters import Headers
from streams.adapters.kafka.connection import KafkaConnection


class KafkaResultPublisher:
    """aiokafka producer with idempotence and acks=all, started lazily in the running loop.

    The producer belongs to the event loop it was started in: a publisher is used in one
    loop only (``prefect_bridge.runtime`` builds one per loop) and says so if it is not.
    Every write is bounded by ``send_timeout``: a caller (a task, a failure hook) gets a
    retriable :class:`PublishError` instead of waiting forever.

    It connects as ``connection`` says and refuses results over ``max_request_size`` bytes.
    """

    def __init__(
        self,
        topic: str,
        connection: KafkaConnection,
        max_request_size: int,
        dlq_topic: str | None = None,
        failures_topic: str | None = None,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
        producer_factory: Callable[..., Any] | None = None,
    ) -> None:
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._failures_topic = failures_topic
        self._config = connection.client_config()
        self._max_request_size = max_request_size
        self._send_timeout = send_timeout
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def _started(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise ConfigurationError(
                "this Kafka publisher belongs to another event loop: build one per loop"
            )
        if self._producer is not None:
            return self._producer
        self._loop = loop
        if self._lock is None:
            self._lock = asyncio.Lock()  # made in the loop that uses it, before any await
        async with self._lock:  # concurrent first publishes start one producer, not two
            if self._producer is None:
                self._producer = await self._start_producer()
        return self._producer

    async def _start_producer(self) -> Any:
        from aiokafka.errors import KafkaError

        factory = self._producer_factory
        if factory is None:
            from aiokafka import AIOKafkaProducer

            factory = AIOKafkaProducer
        producer = factory(
            **self._config,
            acks="all",
            enable_idempotence=True,
            max_request_size=self._max_request_size,
            compression_type="gzip",
        )
        try:
            await asyncio.wait_for(producer.start(), self._send_timeout)
        except (KafkaError, TimeoutError) as exc:
            await producer.stop()
            raise PublishError(f"cannot connect to Kafka: {exc or 'timed out'}") from exc
        return producer

    async def _send(
        self, topic: str, value: bytes, key: bytes | None, headers: Headers | None
    ) -> None:
        from aiokafka.errors import KafkaError

        producer = await self._started()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=key, headers=headers),
                self._send_timeout,
            )
        except TimeoutError as exc:
            raise PublishError(
                f"write to {topic} not acknowledged within {self._send_timeout:.0f}s"
            ) from exc
        except KafkaError as exc:
            raise PublishError(f"write to {topic} failed: {exc}") from exc

    async def publish(self, result: ResultEvent) -> None:
        """Send and wait for the acknowledgement."""
        key, value = encode_result(result)
        if len(value) > self._max_request_size:
            raise ResultTooLarge(
                f"{result.event_type} for {result.novel_id} is {len(value)} bytes; the results "
                f"topic takes {self._max_request_size} (SCRIBE_MAX_RESULT_BYTES)"
            )
        await self._send(self._topic, value, key, None)

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Send to the dead-letter topic and wait for the acknowledgement."""
        if self._dlq_topic is None:
            raise PublishError("no dead-letter topic configured for this publisher")
        await self._send(self._dlq_topic, value, key, headers)

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        """Send ``chapter.processing_failed`` to the failures topic (if one is configured)."""
        if self._failures_topic is None:
            return
        value = failure.model_dump_json().encode()
        await self._send(self._failures_topic, value, failure.novel_id.encode(), None)

    async def close(self) -> None:
        """Flush and stop the producer (in the loop it was started in)."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._loop = None
            await producer.stop()
