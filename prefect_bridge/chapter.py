"""One chapter through its steps: the body of a chapter's flow run and of each chapter of
a batch run (``prefect_bridge.flow``), and what it reports in Prefect's UI."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, cast

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.context import get_run_context
from prefect.utilities.annotations import opaque

from prefect_bridge.embedding import Vector
from prefect_bridge.markdown import escape_markdown
from prefect_bridge.runtime import FlowRuntime, get_runtime
from prefect_bridge.steps import Pause, Steps, plain
from prefect_bridge.tasks import (
    CHUNK_DELAYS,
    EMBED_DELAYS,
    PUBLISH_DELAYS,
    READ_DELAYS,
    chunk_chapter,
    embed_chunks,
    legacy_chapter,
    publish_result,
    read_event,
)
from prefect_bridge.vector_reuse import VectorLookup, plan_reuse
from schemas import (
    ChapterEmbedded,
    ChapterWritten,
    ChunkVector,
    SchemaViolation,
    SourceRef,
    Target,
)
from schemas.failpoints import failpoint

#: Seconds the flow waits for the index to say which chunk texts it knows; then it
#: embeds everything (reuse saves time, it must never cost a run).
LOOKUP_TIMEOUT_SECONDS = 30.0


def _flow_run_id() -> str | None:
    ctx = get_run_context()
    run = getattr(ctx, "flow_run", None)
    return str(run.id) if run is not None else None


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
    target: Target,
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
    target: Target,
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
