"""In-memory stand-ins for the ports, shared by the unit tests."""

from __future__ import annotations

from schemas import ChapterProcessingFailed, ResultEvent
from schemas.dead_letters import Headers


class InMemoryPublisher:
    """Fake ResultPublisher: keeps what was published."""

    def __init__(self) -> None:
        self.published: list[ResultEvent] = []
        self.dead_letters: list[tuple[bytes | None, bytes, Headers]] = []
        self.failures: list[ChapterProcessingFailed] = []
        self.closed = False

    async def publish(self, result: ResultEvent) -> None:
        """Record the result."""
        self.published.append(result)

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Record the dead letter."""
        self.dead_letters.append((key, value, headers))

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        """Record the notification."""
        self.failures.append(failure)

    async def close(self) -> None:
        """Nothing to release; remember that it was asked."""
        self.closed = True
