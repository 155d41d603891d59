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

from prefect_bridge.batch import batch_summary, run_batch
from prefect_bridge.chunking import Chunk, chunk_text
from prefect_bridge.embedding import Vector
from prefect_bridge.failure_report import HOOK_TIMEOUT_SECONDS, report_run_failure
from prefect_bridge.fair_embedding import FairEmbedder
from prefect_bridge.markdown import escape_markdown
from prefect_bridge.runtime import FlowRuntime, get_runtime
from prefect_bridge.steps import Pause, Steps, plain
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
    params = dict(flow_run.parameters or {})
    if "batch" in params:  # only its chapters not yet done or reported (prefect_bridge.batch)
        try:
            async with get_client() as client:
                params = dict((await client.read_flow_run(flow_run.id)).parameters or {})
        except Exception as exc:
            log.warning("batch run %s: reporting every chapter it began with: %s", run_id, exc)
    try:
        async with asyncio.timeout(HOOK_TIMEOUT_SECONDS):
            await report_run_failure(runtime.publisher, runtime.events, params, reason, run_id)
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
    batch: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | State:
    """Process one ``chapter.created``/``chapter.updated`` event of ``novel-events``.

    See :func:`process_chapter`; ``redrive`` is for the failure report. A service away
    (a retriable error, after the tasks' own retries) is not a failure of the chapter:
    the run ends ``AwaitingRetry``, a little later, and a runner runs it again then
    (:mod:`prefect_bridge.try_later`); its failure hook does not run. ``batch``: a
    replay's chapters, each given as the other parameters (:func:`process_batch`).
    """
    if batch is not None:
        return await process_batch(batch)
    try:
        return await process_chapter(source, event_id, novel_id, chapter_id, version, target, event)
    except ScribeError as exc:
        later = awaiting_service(exc, _run_count(), datetime.now(UTC))
        if later is None:
            raise
        get_run_logger().warning("%s", later.message)
        return later


async def process_batch(batch: list[dict[str, Any]]) -> dict[str, Any] | State:
    """A replay's batch run (:mod:`prefect_bridge.batch`): each chapter on its own, the
    steps as plain calls; what is left is tried later, as a chapter's own run."""
    runtime = get_runtime()
    run = getattr(get_run_context(), "flow_run", None)
    run_id = str(run.id) if run is not None else ""
    if run is not None and _run_count() > 1:  # tried again: Prefect holds what is left
        async with get_client() as client:
            batch = list((await client.read_flow_run(run.id)).parameters.get("batch") or [])
    steps = plain_steps(runtime)

    async def process(entry: dict[str, Any]) -> dict[str, Any]:
        return await process_chapter(
            entry.get("source"),
            entry.get("event_id"),
            entry.get("novel_id"),
            entry.get("chapter_id"),
            entry.get("version"),
            entry.get("target"),
            None,
            steps,
        )

    async def report(entry: dict[str, Any], reason: str) -> None:
        async with asyncio.timeout(HOOK_TIMEOUT_SECONDS):
            await report_run_failure(runtime.publisher, runtime.events, entry, reason, run_id)

    async def keep(left: list[dict[str, Any]]) -> None:
        if run is None:
            return
        try:  # precision after a crash or timeout only: never worth failing the batch
            async with get_client() as client:
                await client.update_flow_run(run.id, parameters={"batch": left})
        except Exception as exc:
            log.warning("batch run %s: its chapters left not recorded: %s", run_id, exc)

    done = await run_batch(batch, process, report, keep)
    name = getattr(run, "name", None) or "batch"
    for outcome in done.outcomes:
        log.info("batch %s: %s %s (%s)", name, outcome.chapter, outcome.state, outcome.detail)
    try:
        await acreate_markdown_artifact(
            markdown=batch_summary(name, done.outcomes), description=f"{len(batch)} chapters"
        )
    except Exception as exc:  # reporting only
        log.warning("batch run %s: its artifact was not created: %s", run_id, exc)
    counts = {s: sum(o.state == s for o in done.outcomes) for s in ("done", "failed", "later")}
    if done.error is not None:
        later = awaiting_service(done.error, _run_count(), datetime.now(UTC))
        if later is not None:
            get_run_logger().warning("%d chapters left: %s", len(done.left), later.message)
            return later
        for entry in done.left:  # tried later often enough: failed for good, one by one
            await report(entry, f"{type(done.error).__name__}: {done.error}")
        counts["failed"] += counts.pop("later")
    get_run_logger().info("batch of %d chapters: %s", len(batch), counts)
    return {"chapters": len(batch), **counts}


def _run_count() -> int:
    run = getattr(get_run_context(), "flow_run", None)
    return int(getattr(run, "run_count", 0) or 1)


def task_steps(runtime: FlowRuntime) -> Steps:
    """The steps as Prefect tasks, with the runtime's timeouts (a chapter's own run)."""
    chunk_task, embed_task, publish_task = chunk_chapter, embed_chunks, publish_result
    limits = runtime.timeouts
    if limits is not None:
        chunk_task = chunk_chapter.with_options(timeout_seconds=limits.chunk)
        embed_task = embed_chunks.with_options(timeout_seconds=limits.embed)
        publish_task = publish_result.with_options(timeout_seconds=limits.publish)

    async def publish(result: ChapterEmbedded) -> None:
        # opaque: Prefect hands the result over as it is, without walking its ~10,000
        # floats for task inputs and futures (twice, ~0.2 s per chapter on 2 cores); the
        # task gets the unwrapped result.
        await publish_task(cast(ChapterEmbedded, opaque(result)))

    return Steps(read=read_event, chunk=chunk_task, embed=embed_task, publish=publish)


def plain_steps(runtime: FlowRuntime, pause: Pause = asyncio.sleep) -> Steps:
    """The same steps as plain calls with the tasks' attempts, delays and timeouts (a
    batch run: no task run per chapter)."""
    limits = runtime.timeouts
    return Steps(
        read=plain(read_event.fn, READ_DELAYS, None, pause),
        chunk=plain(chunk_chapter.fn, CHUNK_DELAYS, limits.chunk if limits else None, pause),
        embed=plain(embed_chunks.fn, EMBED_DELAYS, limits.embed if limits else None, pause),
        publish=plain(publish_result.fn, PUBLISH_DELAYS, limits.publish if limits else None, pause),
        report=False,
    )


async def process_chapter(
    source: dict[str, Any] | None,
    event_id: str | None,
    novel_id: str | None,
    chapter_id: str | None,
    version: int | None,
    target: str | None,
    event: dict[str, Any] | None,
    steps: Steps | None = None,
) -> dict[str, Any]:
    """The body of :func:`novel_processing`, inside its flow run.

    The parameters say where the event is in Kafka (``source``) and which it is; the flow
    reads it there. ``novel_id``, ``chapter_id`` and ``version`` are for the Prefect UI and
    must match the event read. ``event``: the whole event, as runs submitted by the
    previous release carry it instead (read for one release, for rolling upgrades).
    ``steps``: how the steps run (default: as tasks, :func:`task_steps`).
    """
    logger = get_run_logger()
    runtime = get_runtime()
    steps = steps or task_steps(runtime)
    position = SourceRef.model_validate(source) if source is not None else None
    if event is not None and event_id is None:  # submitted by the previous release
        chapter = legacy_chapter(event, runtime.max_text_bytes)
    elif position is None or event_id is None:
        raise SchemaViolation("novel-processing needs the event's source and event_id")
    else:
        chapter = await steps.read(position, event_id, runtime.max_text_bytes)
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
    chunks = await steps.chunk(chapter.text)
    timings["chunk"] = time.monotonic() - began
    began = time.monotonic()
    texts = [c.text for c in chunks]
    plan = plan_reuse(texts, await known_vectors(runtime, chapter, texts, target, logger))
    fresh = await steps.embed([texts[i] for i in plan.to_embed]) if plan.to_embed else []
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
    failpoint("flow.after_embed")
    await steps.publish(result)
    failpoint("flow.after_publish")
    timings["publish"] = time.monotonic() - began
    counts = {"reused": len(plan.reused), "embedded": len(plan.to_embed)}
    if not steps.report:  # a batch reports its chapters itself
        return {"chunks": len(chunks), "model": result.model, "version": chapter.version, **counts}
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
