"""How a chapter's steps run: as Prefect tasks, or as plain calls with the same retries.

A chapter's own flow run runs each step (read, chunk, embed, publish) as a Prefect task:
the UI shows each, with its retries. A batch run (``prefect_bridge.batch``) runs the same
step functions as plain calls, with the same attempts, delays and timeouts: a task run
costs Prefect's database its states and events, per chapter, which is what a batch saves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect_bridge.chunking import Chunk
from prefect_bridge.embedding import Vector
from schemas import ChapterEmbedded, ChapterWritten, ScribeError, SourceRef

T = TypeVar("T")

#: Waits the given seconds (``asyncio.sleep``; tests pass one that does not wait).
Pause = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Steps:
    """The step callables of one chapter; ``report``: log the chapter and create its
    artifact in Prefect (a chapter's own run), or leave that to the batch."""

    read: Callable[[SourceRef, str, int], Awaitable[ChapterWritten]]
    chunk: Callable[[str], Awaitable[list[Chunk]]]
    embed: Callable[[list[str]], Awaitable[list[Vector]]]
    publish: Callable[[ChapterEmbedded], Awaitable[None]]
    report: bool = True


def worth_retrying(error: BaseException) -> bool:
    """As the tasks' retry condition: a :class:`ScribeError` says; anything else (a
    timeout, a connection error, the unexpected) is worth another try."""
    if isinstance(error, ScribeError):
        return error.retriable
    return isinstance(error, Exception)


async def attempts(
    call: Callable[[], Awaitable[T]],
    delays: Sequence[float],
    limit: float | None,
    pause: Pause = asyncio.sleep,
) -> T:
    """``call`` until it returns, at most ``len(delays) + 1`` times, each attempt bounded by
    ``limit`` seconds; an error not :func:`worth_retrying`, or the last one, is raised."""
    for delay in (*delays, None):
        try:
            async with asyncio.timeout(limit):
                return await call()
        except Exception as exc:
            if delay is None or not worth_retrying(exc):
                raise
            await pause(delay)
    raise AssertionError("unreachable")


def plain(
    fn: Callable[..., Awaitable[T]], delays: Sequence[float], limit: float | None, pause: Pause
) -> Callable[..., Awaitable[T]]:
    """``fn`` called with :func:`attempts`."""

    async def call(*args: Any) -> T:
        return await attempts(lambda: fn(*args), delays, limit, pause)

    return call
