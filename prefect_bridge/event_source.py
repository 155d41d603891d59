"""Reading the input event of a flow run from Kafka, the source of truth.

A flow run's parameters carry the event's position (topic, partition, offset) and its
identity, not the chapter text: the text stays in the log, out of Prefect's database and
UI, and a retried or replayed run reads the same bytes again.
"""

from __future__ import annotations

from typing import Protocol

from schemas import SourceRef

#: How long one read may wait for the broker.
READ_TIMEOUT_SECONDS = 30.0


class EventSource(Protocol):
    """Reads one message of the input topic by its position."""

    async def read(self, source: SourceRef) -> tuple[bytes | None, bytes]:
        """Key and value of the message at ``source``.

        Raises :class:`EventUnavailable` (not retriable) when the log no longer (or does
        not yet) hold that offset, :class:`ServiceUnavailable` while Kafka is away.
        """
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...
