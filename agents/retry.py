"""Retrying calls to services while their errors say they are retriable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from schemas import ScribeError

T = TypeVar("T")
log = logging.getLogger("scribe.retry")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff; ``attempts=None`` retries until the call succeeds."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    attempts: int | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.cap, self.initial * self.factor ** (attempt - 1))


async def retrying(call: Callable[[], Awaitable[T]], backoff: Backoff, what: str) -> T:
    """Await ``call()``; on a retriable :class:`ScribeError` wait and try again.

    Non-retriable errors propagate at once; so does the last retriable one once
    ``backoff.attempts`` is used up.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except ScribeError as exc:
            attempt += 1
            if not exc.retriable or (backoff.attempts is not None and attempt >= backoff.attempts):
                raise
            delay = backoff.delay(attempt)
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc.reason, attempt, delay)
            await asyncio.sleep(delay)
