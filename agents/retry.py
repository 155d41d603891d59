"""Retrying calls to services while their errors say they are retriable: one call
(:func:`retrying`), or every call of a port (:func:`retried`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

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


P = TypeVar("P")


class _Retried:
    """A port whose coroutine methods are retried (see :func:`retried`)."""

    def __init__(self, port: object, backoff: Backoff, what: str) -> None:
        self._port = port
        self._backoff = backoff
        self._what = what

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await retrying(
                partial(attr, *args, **kwargs), self._backoff, f"{self._what}.{name}"
            )

        return call

    def __repr__(self) -> str:
        return f"retried({self._port!r}, {self._backoff!r})"


def retried(port: P, backoff: Backoff, what: str) -> P:
    """``port`` with each coroutine method retried with ``backoff`` while its error is
    retriable (:func:`retrying`); other attributes are the port's own.

    Wrap a port once, where its user gets it (as eventsourcing's ``@retry`` decorates a
    recorder's methods), and call it plainly: the handler then reads as its decision, not
    as retry plumbing. ``what`` names the port in the retry warnings.
    """
    return cast(P, _Retried(port, backoff, what))
