"""Reporting a chapter whose flow run ended for good without publishing it.

Used by the flow's failure hook (the run failed after its retries) and by the runners'
watchdog (the run crashed on its last attempt: its process died, so its own hooks never
ran). Either way the platform and the operator learn it the same way: ``chapter.failed``
on the results topic (the ledger marks the chapter failed, ``scribe status`` shows it),
``chapter.processing_failed`` on the failures topic, and the event, read again from Kafka,
parked in the dead-letter topic as retriable, so ``scribe dlq redrive`` can run it again.

Runs submitted by the release before the chapter text left the parameters carry the whole
event as ``event`` instead of its identity; :func:`run_identity` reads both shapes (kept
for one release, so a rolling upgrade strands no run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prefect_bridge.event_source import EventSource
from prefect_bridge.publisher import ResultPublisher
from schemas import ChapterFailed, ChapterProcessingFailed, ScribeError, SourceRef
from schemas.dead_letters import H_REDRIVE, dead_letter_headers
from schemas.target import Target

log = logging.getLogger("scribe.flow")

#: The bound of one report: a few Kafka writes and one read, each bounded on its own.
HOOK_TIMEOUT_SECONDS = 240.0


@dataclass(frozen=True)
class RunIdentity:
    """Which chapter version a flow run processes, read from its parameters."""

    event_id: str
    novel_id: str
    chapter_id: str
    version: int


def run_identity(params: dict[str, Any]) -> RunIdentity | None:
    """The identity in ``params`` (today's shape, or the legacy ``event``); ``None`` if absent."""
    legacy = params.get("event")
    fields = legacy if isinstance(legacy, dict) and not params.get("event_id") else params
    event_id, novel_id = fields.get("event_id"), fields.get("novel_id")
    chapter_id, version = fields.get("chapter_id"), fields.get("version")
    if not (event_id and novel_id and chapter_id and isinstance(version, int)):
        return None
    return RunIdentity(str(event_id), str(novel_id), str(chapter_id), version)


def run_source(params: dict[str, Any]) -> SourceRef | None:
    """Where the run's event is in the input topic, if the parameters say."""
    source = params.get("source")
    return SourceRef.model_validate(source) if source else None


async def report_run_failure(
    publisher: ResultPublisher,
    events: EventSource | None,
    params: dict[str, Any],
    reason: str,
    run_id: str,
) -> None:
    """Publish the final failure of the run with ``params`` and park its event (of a
    batch run: of each chapter in its ``batch``).

    A rebuild's run (``target`` set) is recorded in the rebuild's ledger and parked with
    its target (``scribe.target``): the rebuild runs it once more and refuses to switch
    without it unless forced; the platform is not notified. Raises what the publisher
    raises (the caller bounds and retries it); an event gone from the log is logged, not
    parked.
    """
    batch = params.get("batch")
    if isinstance(batch, list):  # a replay's batch run: each chapter it still holds
        for entry in batch:
            await report_run_failure(publisher, events, entry, reason, run_id)
        return
    reason = reason[:2000]
    source, target = run_source(params), Target.of(params.get("target"))
    identity = run_identity(params)
    if identity is not None:
        await publisher.publish(
            ChapterFailed(
                event_id=identity.event_id,
                novel_id=identity.novel_id,
                chapter_id=identity.chapter_id,
                version=identity.version,
                target=target,
                source=source,
                flow_run_id=run_id,
                reason=reason,
            )
        )
        if target.live:
            await publisher.notify_failure(
                ChapterProcessingFailed(
                    source_event_id=identity.event_id,
                    novel_id=identity.novel_id,
                    chapter_id=identity.chapter_id,
                    version=identity.version,
                    flow_run_id=run_id,
                    reason=reason,
                    source=source,
                )
            )
    if source is None or events is None:
        log.error("flow run %s: no event position, nothing to park in the DLQ", run_id)
        return
    try:
        key, value = await events.read(source)
    except ScribeError as exc:  # gone from the log: there is nothing to redrive
        log.error("flow run %s: the event at %s cannot be parked: %s", run_id, source, exc)
        return
    headers = dead_letter_headers(source, "FlowRunFailed", reason, True, run_id)
    headers.append((H_REDRIVE, str(int(params.get("redrive") or 0)).encode()))
    headers += target.header()
    await publisher.dead_letter(key, value, headers)
