"""The processing flow's tasks: read a chapter's event, chunk it, embed it, publish it.

Each step retries what retrying can fix (:func:`retry_unless_permanent`); its attempts
and delays are constants here, shared by a chapter's own run (the steps as Prefect tasks)
and a replay's batch run (the same functions as plain calls, ``prefect_bridge.steps``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_bridge.chunking import Chunk, chunk_text
from prefect_bridge.embedding import Vector
from prefect_bridge.fair_embedding import FairEmbedder
from prefect_bridge.runtime import get_runtime
from schemas import (
    ChapterEmbedded,
    ChapterWritten,
    ConfigurationError,
    EventUnavailable,
    SchemaViolation,
    ScribeError,
    SourceRef,
    parse_event,
)


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task unless its error says retrying cannot help.

    Prefect hands over ``Failed(data=<the exception>)``. The error is read from
    ``state.data``: ``state.result()`` returns a coroutine inside an async engine
    instead of raising, which would make every error look permanent.
    """
    error = getattr(state, "data", None)
    if isinstance(error, ScribeError):
        return error.retriable
    return True  # timeouts, connection errors, the unexpected: worth another try


#: Seconds between a step's attempts (one more attempt than delays), as tasks and in batches.
READ_DELAYS: tuple[float, ...] = (1, 5, 15)
CHUNK_DELAYS: tuple[float, ...] = (0,)
EMBED_DELAYS: tuple[float, ...] = (2, 10)
PUBLISH_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 30)


@task(
    name="chunk",
    retries=len(CHUNK_DELAYS),
    retry_delay_seconds=list(CHUNK_DELAYS),
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_unless_permanent,
)
async def chunk_chapter(text: str) -> list[Chunk]:
    """Sentence-aware chunks sized with the embedder's own tokenizer."""
    runtime = get_runtime()
    return await anyio.to_thread.run_sync(
        lambda: chunk_text(text, runtime.policy, runtime.embedder.count_tokens),
        abandon_on_cancel=True,
    )


@task(
    name="embed",
    retries=len(EMBED_DELAYS),
    retry_delay_seconds=list(EMBED_DELAYS),
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_unless_permanent,
)
async def embed_chunks(texts: list[str]) -> list[Vector]:
    """Embed chunk texts in a worker thread (keeps the event loop free).

    The thread is abandoned when the task times out: a thread cannot be killed, and
    waiting for a hung model would turn the timeout into a hang. A shared model
    (:class:`FairEmbedder`) embeds in turns with the other runs, and the abandoned
    thread stops at its next turn instead of embedding the rest for nobody.
    """
    embedder = get_runtime().embedder
    cancelled = threading.Event()

    def embed() -> list[Vector]:
        if isinstance(embedder, FairEmbedder):
            return embedder.embed_passages(texts, cancelled)
        return embedder.embed_passages(texts)

    try:
        return await anyio.to_thread.run_sync(embed, abandon_on_cancel=True)
    finally:
        cancelled.set()


@task(
    name="publish",
    retries=len(PUBLISH_DELAYS),
    retry_delay_seconds=list(PUBLISH_DELAYS),
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_unless_permanent,
)
async def publish_result(result: ChapterEmbedded) -> None:
    """Write the result to the results topic and wait for the broker's acknowledgement."""
    await get_runtime().publisher.publish(result)


@task(
    name="read event",
    retries=len(READ_DELAYS),
    retry_delay_seconds=list(READ_DELAYS),
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_unless_permanent,
)
async def read_event(source: SourceRef, event_id: str, max_text_bytes: int) -> ChapterWritten:
    """The chapter write at ``source`` in the input topic (Kafka is the source of truth).

    Fails for good when the log no longer holds it (retention) or holds another event
    there (a position from another cluster).
    """
    runtime = get_runtime()
    if runtime.events is None:
        raise ConfigurationError("the flow runtime has no event source to read the event")
    _, value = await runtime.events.read(source)
    parsed = parse_event(value, max_text_bytes=max_text_bytes)
    if str(parsed.event_id) != event_id:
        raise EventUnavailable(f"{source} holds event {parsed.event_id}, not {event_id}")
    return chapter_write(parsed)


def legacy_chapter(event: dict[str, Any], max_text_bytes: int) -> ChapterWritten:
    """The chapter write a run of the previous release carries in its parameters."""
    return chapter_write(parse_event(json.dumps(event).encode(), max_text_bytes=max_text_bytes))


def chapter_write(parsed: Any) -> ChapterWritten:
    """``parsed`` (an input event) as a chapter write, or :class:`SchemaViolation`."""
    if not isinstance(parsed, ChapterWritten):
        raise SchemaViolation(f"novel-processing handles chapter writes, got {parsed.event_type}")
    return parsed
