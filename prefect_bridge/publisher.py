"""Publishing result events to Kafka (the flow's output port)."""

from __future__ import annotations

from typing import Any, Protocol

from schemas import ChapterProcessingFailed, PublishError, ResultEvent, ResultTooLarge
from schemas.dead_letters import Headers


class ResultPublisher(Protocol):
    """Writes one result event to the results topic, keyed by novel_id, durably."""

    async def publish(self, result: ResultEvent) -> None:
        """Return once the broker has acknowledged the write (acks=all)."""
        ...

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Park an input event that could not be processed, with the reason in headers."""
        ...

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        """Tell the platform that a chapter could not be processed (failures topic)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def encode_result(result: ResultEvent) -> tuple[bytes, bytes]:
    """Key and JSON value of a result message."""
    return result.novel_id.encode(), result.model_dump_json().encode()


class KafkaResultPublisher:
    """aiokafka producer with idempotence and acks=all, started lazily in the running loop."""

    def __init__(
        self,
        topic: str,
        client_config: dict[str, Any],
        max_request_size: int,
        dlq_topic: str | None = None,
        failures_topic: str | None = None,
    ) -> None:
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._failures_topic = failures_topic
        self._config = client_config
        self._max_request_size = max_request_size
        self._producer: Any = None

    async def _started(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer
            from aiokafka.errors import KafkaError

            producer = AIOKafkaProducer(
                **self._config,
                acks="all",
                enable_idempotence=True,
                max_request_size=self._max_request_size,
                compression_type="gzip",
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise PublishError(f"cannot connect to Kafka: {exc}") from exc
            self._producer = producer
        return self._producer

    async def publish(self, result: ResultEvent) -> None:
        """Send and wait for the acknowledgement."""
        from aiokafka.errors import KafkaError

        key, value = encode_result(result)
        if len(value) > self._max_request_size:
            raise ResultTooLarge(
                f"{result.event_type} for {result.novel_id} is {len(value)} bytes; the results "
                f"topic takes {self._max_request_size} (SCRIBE_MAX_RESULT_BYTES)"
            )
        producer = await self._started()
        try:
            await producer.send_and_wait(self._topic, value=value, key=key)
        except KafkaError as exc:
            raise PublishError(f"publish to {self._topic} failed: {exc}") from exc

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Send to the dead-letter topic and wait for the acknowledgement."""
        from aiokafka.errors import KafkaError

        if self._dlq_topic is None:
            raise PublishError("no dead-letter topic configured for this publisher")
        producer = await self._started()
        try:
            await producer.send_and_wait(self._dlq_topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            raise PublishError(f"dead-letter write to {self._dlq_topic} failed: {exc}") from exc

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        """Send ``chapter.processing_failed`` to the failures topic (if one is configured)."""
        from aiokafka.errors import KafkaError

        if self._failures_topic is None:
            return
        producer = await self._started()
        try:
            await producer.send_and_wait(
                self._failures_topic,
                value=failure.model_dump_json().encode(),
                key=failure.novel_id.encode(),
            )
        except KafkaError as exc:
            raise PublishError(f"write to {self._failures_topic} failed: {exc}") from exc

    async def close(self) -> None:
        """Flush and stop the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
