"""The Prefect flow ``novel-processing``: a chapter's run, or a replay's batch run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import get_run_context

from prefect_bridge.batch import batch_summary, run_batch
from prefect_bridge.chapter import plain_steps, process_chapter
from prefect_bridge.failure_report import HOOK_TIMEOUT_SECONDS, report_run_failure
from prefect_bridge.runtime import get_runtime
from prefect_bridge.try_later import awaiting_service
from prefect_bridge.unreported import mark_reported
from schemas import ScribeError, Target

FLOW_NAME = "novel-processing"

log = logging.getLogger("scribe.flow")


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
        return await process_chapter(
            source, event_id, novel_id, chapter_id, version, Target.of(target), event
        )
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
            Target.of(entry.get("target")),
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
