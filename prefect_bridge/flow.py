"""The Prefect flow ``novel-processing``: chunk a chapter, embed it, publish the result."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any, cast

import anyio
from prefect import State, flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.utilities.annotations import opaque

from prefect_bridge.chunking import Chunk, chunk_text
from prefect_bridge.embedding import Vector
from prefect_bridge.failure_report import HOOK_TIMEOUT_SECONDS, report_run_failure
from prefect_bridge.fair_embedding import FairEmbedder
from prefect_bridge.markdown import escape_markdown
from prefect_bridge.runtime import FlowRuntime, get_runtime
from prefect_bridge.try_later import awaiting_service
from prefect_bridge.unreported import mark_reported
from prefect_bridge.vector_reuse import VectorLookup, plan_reuse
from schemas import (
    ChapterEmbedded,
    ChapterWritten,
    ChunkVector,
    ConfigurationError,
    EventUnavailable,
    SchemaViolation,
    ScribeError,
    SourceRef,
    parse_event,
)
from schemas.failpoints import failpoint

FLOW_NAME = "novel-processing"

#: Seconds the flow waits for the index to say which chunk texts it knows; then it
#: embeds everything (reuse saves time, it must never cost a run).
LOOKUP_TIMEOUT_SECONDS = 30.0

log = logging.getLogger("scribe.flow")


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


@task(name="chunk", retries=1, cache_policy=NO_CACHE, retry_condition_fn=retry_unless_permanent)
async def chunk_chapter(text: str) -> list[Chunk]:
    """Sentence-aware chunks sized with the embedder's own tokenizer."""
    runtime = get_runtime()
    return await anyio.to_thread.run_sync(
        lambda: chunk_text(text, runtime.policy, runtime.embedder.count_tokens),
        abandon_on_cancel=True,
    )


@task(
    name="embed",
    retries=2,
    retry_delay_seconds=[2, 10],
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
    retries=5,
    retry_delay_seconds=[1, 2, 5, 10, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_unless_permanent,
)
async def publish_result(result: ChapterEmbedded) -> None:
    """Write the result to the results topic and wait for the broker's acknowledgement."""
    await get_runtime().publisher.publish(result)


def _flow_run_id() -> str | None:
    ctx = get_run_context()
    run = getattr(ctx, "flow_run", None)
    return str(run.id) if run is not None else None


async def report_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Final failure (after the flow's retries): record it and park the event.

    See :func:`prefect_bridge.failure_report.report_run_failure`. Crashes are not reported
    here: a crashed run is run again by the runners' watchdog, which reports its last crash
    itself (a process killed with its run never runs this hook). Bounded by
    :data:`HOOK_TIMEOUT_SECONDS`: a hook never holds a runner slot forever.
    """
    run_id = str(flow_run.id)
    runtime = get_runtime()
    reason = f"{state.type.value}: {state.message or state.name}"
    try:
        async with asyncio.timeout(HOOK_TIMEOUT_SECONDS):
            await report_run_failure(
                runtime.publisher, runtime.events, dict(flow_run.parameters or {}), reason, run_id
            )
    except TimeoutError:
        log.error("flow run %s: failure not reported within %.0fs", run_id, HOOK_TIMEOUT_SECONDS)
        raise
    try:  # the mark that keeps the watchdog from reporting it again
        async with get_client() as client:
            await mark_reported(client, flow_run.id, flow_run.tags)
    except Exception as exc:  # Prefect away: reported twice later, which is harmless
        log.warning("flow run %s: failure reported but not marked: %s", run_id, exc)


@task(
    name="read event",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
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


@flow(
    name=FLOW_NAME,
    retries=1,
    retry_delay_seconds=5,
    persist_result=False,
    on_failure=[report_failure],
)
async def novel_processing(
    source: dict[str, Any] | None = None,
    event_id: str | None = None,
    novel_id: str | None = None,
    chapter_id: str | None = None,
    version: int | None = None,
    redrive: int = 0,
    target: str | None = None,
    event: dict[str, Any] | None = None,
) -> dict[str, Any] | State:
    """Process one ``chapter.created``/``chapter.updated`` event of ``novel-events``.

    See :func:`process_chapter`; ``redrive`` is for the failure report. A service away
    (a retriable error, after the tasks' own retries) is not a failure of the chapter:
    the run ends ``AwaitingRetry``, a little later, and a runner runs it again then
    (:mod:`prefect_bridge.try_later`); its failure hook does not run.
    """
    try:
        return await process_chapter(source, event_id, novel_id, chapter_id, version, target, event)
    except ScribeError as exc:
        later = awaiting_service(exc, _run_count(), datetime.now(UTC))
        if later is None:
            raise
        get_run_logger().warning("%s", later.message)
        return later


def _run_count() -> int:
    run = getattr(get_run_context(), "flow_run", None)
    return int(getattr(run, "run_count", 0) or 1)


async def process_chapter(
    source: dict[str, Any] | None,
    event_id: str | None,
    novel_id: str | None,
    chapter_id: str | None,
    version: int | None,
    target: str | None,
    event: dict[str, Any] | None,
) -> dict[str, Any]:
    """The body of :func:`novel_processing`, inside its flow run.

    The parameters say where the event is in Kafka (``source``) and which it is; the flow
    reads it there. ``novel_id``, ``chapter_id`` and ``version`` are for the Prefect UI and
    must match the event read. ``event``: the whole event, as runs submitted by the
    previous release carry it instead (read for one release, for rolling upgrades).
    """
    logger = get_run_logger()
    runtime = get_runtime()
    position = SourceRef.model_validate(source) if source is not None else None
    if event is not None and event_id is None:  # submitted by the previous release
        chapter = legacy_chapter(event, runtime.max_text_bytes)
    elif position is None or event_id is None:
        raise SchemaViolation("novel-processing needs the event's source and event_id")
    else:
        chapter = await read_event(position, event_id, runtime.max_text_bytes)
        if (chapter.novel_id, chapter.chapter_id, chapter.version) != (
            novel_id,
            chapter_id,
            version,
        ):
            raise SchemaViolation(
                f"{position} holds {chapter.novel_id}/{chapter.chapter_id}@v{chapter.version}, "
                f"not {novel_id}/{chapter_id}@v{version}"
            )
    timings: dict[str, float] = {}
    began = time.monotonic()
    limits = runtime.timeouts
    chunk_task, embed_task, publish_task = chunk_chapter, embed_chunks, publish_result
    if limits is not None:
        chunk_task = chunk_chapter.with_options(timeout_seconds=limits.chunk)
        embed_task = embed_chunks.with_options(timeout_seconds=limits.embed)
        publish_task = publish_result.with_options(timeout_seconds=limits.publish)
    chunks = await chunk_task(chapter.text)
    timings["chunk"] = time.monotonic() - began
    began = time.monotonic()
    texts = [c.text for c in chunks]
    plan = plan_reuse(texts, await known_vectors(runtime, chapter, texts, target, logger))
    fresh = await embed_task([texts[i] for i in plan.to_embed]) if plan.to_embed else []
    vectors = plan.vectors(fresh)
    timings["embed"] = time.monotonic() - began
    result = ChapterEmbedded(
        event_id=chapter.event_id,
        novel_id=chapter.novel_id,
        chapter_id=chapter.chapter_id,
        version=chapter.version,
        title=chapter.title,
        model=runtime.embedder.name,
        dimension=runtime.embedder.dimension,
        pipeline_version=runtime.pipeline_version,
        flow_run_id=_flow_run_id(),
        source=position,
        target=target,
        chunks=tuple(
            ChunkVector(chunk_no=c.chunk_no, text=c.text, vector=tuple(v), reused=i in plan.reused)
            for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))
        ),
    )
    began = time.monotonic()
    # opaque: Prefect hands the result over as it is, without walking its ~10,000 floats
    # for task inputs and futures (twice, ~0.2 s per chapter on 2 cores); the task gets
    # the unwrapped result.
    failpoint("flow.after_embed")
    await publish_task(cast(ChapterEmbedded, opaque(result)))
    failpoint("flow.after_publish")
    timings["publish"] = time.monotonic() - began
    counts = {"reused": len(plan.reused), "embedded": len(plan.to_embed)}
    # The chapter is durable on the results topic from here on: what follows only reports
    # it, and must not fail the run (a failed run publishes chapter.failed, parks the event
    # in the DLQ and notifies the platform, for a chapter that is in the index).
    try:
        logger.info(
            "embedded %s/%s@v%s: %d chunks with %s (%d reused, %d embedded)",
            chapter.novel_id,
            chapter.chapter_id,
            chapter.version,
            len(chunks),
            result.model,
            counts["reused"],
            counts["embedded"],
            extra={
                "event_id": str(chapter.event_id),
                "novel_id": chapter.novel_id,
                "chapter_id": chapter.chapter_id,
                "version": chapter.version,
                "flow_run_id": result.flow_run_id,
            },
        )
        await acreate_markdown_artifact(
            key=artifact_key(chapter.novel_id, chapter.chapter_id),
            markdown=chapter_summary(result, timings, counts["reused"]),
            description=f"{chapter.novel_id}/{chapter.chapter_id}@v{chapter.version}",
        )
    except Exception as exc:  # reporting only: the result is published
        logger.warning(
            "%s/%s@v%s is published; its artifact was not created: %s",
            chapter.novel_id,
            chapter.chapter_id,
            chapter.version,
            exc,
        )
    return {"chunks": len(chunks), "model": result.model, "version": chapter.version, **counts}


async def known_vectors(
    runtime: FlowRuntime,
    chapter: ChapterWritten,
    texts: list[str],
    target: str | None,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> dict[str, Vector]:
    """Vectors the index holds for these chunk texts (the runtime's ``vectors`` port).

    Empty when the runtime has no port or the index does not answer in time: reuse is an
    optimisation, the run then embeds every chunk.
    """
    lookup: VectorLookup | None = getattr(runtime, "vectors", None)
    if lookup is None or not texts:
        return {}
    try:
        return await asyncio.wait_for(
            lookup.known_vectors(
                chapter.novel_id, chapter.chapter_id, runtime.embedder.name, texts, target
            ),
            LOOKUP_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # any failure: embed everything instead
        logger.warning("no embeddings reused: the index lookup failed: %s", exc)
        return {}


def artifact_key(novel_id: str, chapter_id: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    raw = f"chapter-{novel_id}-{chapter_id}".lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")[:200]


def chapter_summary(result: ChapterEmbedded, timings: dict[str, float], reused: int = 0) -> str:
    """The markdown shown on the flow run's Artifacts tab (``reused``: chunks not embedded)."""
    md = escape_markdown  # every text from the log (or a setting) is shown literally
    sizes = [len(c.text) for c in result.chunks]
    lines = [
        f"# {md(result.novel_id)} / {md(result.chapter_id)} @ v{result.version}",
        "",
        f"**{md(result.title) if result.title else '(untitled)'}**",
        "",
        "| | |",
        "|---|---|",
        f"| chunks | {len(result.chunks)} (characters: min {min(sizes, default=0)}, "
        f"max {max(sizes, default=0)}) |",
        f"| reused | {reused} chunks kept their vectors, {len(result.chunks) - reused} embedded |",
        f"| model | {md(result.model)} ({result.dimension}-d) |",
        f"| pipeline | {md(result.pipeline_version)} |",
        f"| source | {md(str(result.source)) if result.source else 'n/a'} |",
        f"| event | {result.event_id} |",  # a UUID
    ]
    lines += [f"| {md(step)} | {seconds:.2f} s |" for step, seconds in timings.items()]
    if result.chunks:
        lines += ["", "First chunk:", "", "> " + md(result.chunks[0].text[:200])]
    return "\n".join(lines)
