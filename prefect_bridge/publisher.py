"""Publishing result events (the flow's output port); the Kafka adapter is in
``streams.adapters.kafka.publisher``."""

from __future__ import annotations

from typing import Protocol

from schemas import (
    ChapterProcessingFailed,
    ResultEvent,
)
from schemas.dead_letters import Headers

#: Seconds one write (or the producer's start) may take before it fails as retriable.
SEND_TIMEOUT_SECONDS = 60.0


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
