"""The chapter agent: one input event in, one durable effect out, in log order per novel."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.batches import Member, SubmitBatchRun, plan_batches
from agents.decisions import IgnoreEvent, PublishRemoval, SubmitFlowRun, plan_event
from agents.ledger import Ledger
from agents.ports import DeadLetters, FlowSubmitter, ResultWriter
from agents.retry import Backoff, retried
from agents.telemetry import NoTelemetry, Telemetry
from schemas import (
    LIVE,
    ChapterCreated,
    ChapterUpdated,
    InvalidEvent,
    NovelEvent,
    SchemaViolation,
    SourceRef,
    Target,
    parse_event,
)
from schemas.failpoints import failpoint

log = logging.getLogger("scribe.agents.chapter")

#: One message as the agent takes it: key, value, where it is logged, its redrive count.
Message = tuple[bytes | None, bytes | None, SourceRef, int]


def _context(event: NovelEvent) -> dict[str, object]:
    """Fields that let one chapter be traced across processes in the logs."""
    return {
        "event_id": str(event.event_id),
        "novel_id": event.novel_id,
        "chapter_id": getattr(event, "chapter_id", None),
        "version": event.version,
    }


@dataclass
class ChapterAgent:
    """Decode -> plan (pure) -> call a port; returns only once the effect is durable.

    Chapter writes become Prefect flow runs (acknowledged when Prefect accepted the run);
    deletions go straight to the results topic, where the sink orders them against
    embeddings by version. Invalid input is dead-lettered; retriable failures are retried
    with capped backoff, so the caller's offset is committed only after success.

    Bounded work: at most ``max_in_flight`` runs of the deployment may be scheduled or
    running; at the bound the agent waits (and so stops consuming) until runs finish.
    """

    submitter: FlowSubmitter
    results: ResultWriter
    dead_letters: DeadLetters
    ledger: Ledger
    pipeline_version: str
    max_text_bytes: int
    max_in_flight: int = 8
    target: Target = LIVE
    backoff: Backoff = field(default_factory=Backoff)
    capacity_poll_seconds: float = 0.5
    telemetry: Telemetry = field(default_factory=NoTelemetry)
    _budget: int = field(default=0, init=False, repr=False)
    _gate: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        # Each port once, with the agent's backoff: the handlers call them plainly, and a
        # retriable failure is retried until it succeeds, so the caller commits the offset
        # only once the effect is durable.
        self.submitter = retried(self.submitter, self.backoff, "submitter")
        self.results = retried(self.results, self.backoff, "results")
        self.dead_letters = retried(self.dead_letters, self.backoff, "dead letters")
        self.ledger = retried(self.ledger, self.backoff, "ledger")

    async def handle(
        self, key: bytes | None, value: bytes | None, source: SourceRef, redrive: int = 0
    ) -> str | None:
        """Process one message; return the flow-run id when one was submitted."""
        decided = await self._decide(key, value, source, redrive)
        if decided is None:
            return None
        event, plan = decided
        match plan:
            case SubmitFlowRun():
                assert isinstance(event, ChapterCreated | ChapterUpdated)
                return await self._submit(
                    plan.name, plan.idempotency_key, plan.tags, plan.parameters, [event], source
                )
            case PublishRemoval():
                await self._remove(event, plan)
                return None

    async def handle_batch(
        self, messages: Sequence[Message], label: str, max_chapters: int, max_bytes: int
    ) -> list[tuple[str, int]]:
        """A replay's selection: deletions go out at once (each chapter's selected write
        is logged after its deletions), chapter writes as batch runs of one partition each
        (:mod:`agents.batches`); a batch of one is the chapter's own run. Returns each run
        submitted: its id and how many chapters it has."""
        members: list[Member] = []
        writes: dict[str, tuple[ChapterCreated | ChapterUpdated, SourceRef]] = {}
        for key, value, source, redrive in messages:
            decided = await self._decide(key, value, source, redrive)
            if decided is None:
                continue
            event, plan = decided
            if isinstance(plan, SubmitFlowRun):
                assert isinstance(event, ChapterCreated | ChapterUpdated)
                members.append(Member(plan, source.partition, len(event.text.encode())))
                writes[plan.idempotency_key] = (event, source)
            else:
                await self._remove(event, plan)
        ids = []
        for batch in plan_batches(members, label, max_chapters, max_bytes):
            chapters = [writes[m.idempotency_key] for m in batch.members]
            one = batch.members[0] if len(batch.members) == 1 else None
            run: SubmitFlowRun | SubmitBatchRun = one or batch
            run_id = await self._submit(
                run.name,
                run.idempotency_key,
                run.tags,
                run.parameters,
                [e for e, _ in chapters],
                chapters[0][1],
            )
            ids.append((run_id, len(chapters)))
        return ids

    async def _decide(
        self, key: bytes | None, value: bytes | None, source: SourceRef, redrive: int
    ) -> tuple[NovelEvent, SubmitFlowRun | PublishRemoval] | None:
        """Decode and plan; dead-letters invalid input and settles ignored events (None)."""
        try:
            event = parse_event(value, max_text_bytes=self.max_text_bytes)
            if key is None:
                raise SchemaViolation(
                    f"message has no key; it must be the novel_id {event.novel_id!r} "
                    "(events of a novel must share a partition to stay ordered)"
                )
            if key != event.novel_id.encode():
                raise SchemaViolation(
                    f"message key {key!r} must be the novel_id {event.novel_id!r} "
                    "(events of a novel must share a partition to stay ordered)"
                )
        except InvalidEvent as exc:
            await self._dead_letter(key, value, source, exc, redrive)
            return None
        self.telemetry.event_consumed(event.event_type)
        deleted_at, superseded = None, False
        if isinstance(event, ChapterCreated | ChapterUpdated):
            deleted_at = await self.ledger.novel_deleted_offset(event.novel_id)
            if deleted_at is not None:  # only novels ever deleted pay this read
                settled = await self.ledger.removals_applied([str(event.event_id)])
                superseded = bool(settled)
        plan = plan_event(
            event, source, self.pipeline_version, redrive, self.target, deleted_at, superseded
        )
        if isinstance(plan, IgnoreEvent):
            if plan.remember and not superseded:
                await self.ledger.record_removals([str(event.event_id)])
            log.info("ignoring %s: %s", source, plan.reason, extra=_context(event))
            return None
        return event, plan

    async def _submit(
        self,
        name: str,
        idempotency_key: str,
        tags: list[str],
        parameters: dict[str, Any],
        chapters: Sequence[ChapterCreated | ChapterUpdated],
        source: SourceRef,
    ) -> str:
        """Submit one run for ``chapters`` (one, or a batch) and record each as pending."""
        async with self._gate:  # one submitter at a time keeps the budget exact
            await self._wait_for_capacity()
            began = time.monotonic()
            submitted = await self.submitter.submit(
                name=name, idempotency_key=idempotency_key, tags=tags, parameters=parameters
            )
            self._budget -= 1
            self.telemetry.run_submitted(time.monotonic() - began)
        run_id = submitted.id
        failpoint("chapter.after_submit")
        if not submitted.ended:  # a re-sent event's run ended long ago: nothing to wait for
            for event in chapters:
                await self.ledger.record_submitted(
                    event.novel_id, event.chapter_id, event.version, run_id
                )
        log.info(
            "%s flow run %s (%s) for %s",
            "found the ended" if submitted.ended else "submitted",
            name,
            run_id,
            source,
            extra={**_context(chapters[0]), "flow_run_id": run_id},
        )
        return run_id

    async def _remove(self, event: NovelEvent, plan: PublishRemoval) -> None:
        await self.results.publish(plan.result)
        log.info(
            "published %s for novel %s",
            plan.result.event_type,
            plan.result.novel_id,
            extra=_context(event),
        )

    async def _dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        source: SourceRef,
        error: InvalidEvent,
        redrive: int = 0,
    ) -> None:
        log.warning(
            "dead-lettering %s: %s: %s",
            source,
            type(error).__name__,
            error.reason,
            extra={"source": str(source), "error_class": type(error).__name__},
        )
        self.telemetry.dead_lettered(type(error).__name__)
        await self.dead_letters.dead_letter(
            key=key, value=value, source=source, error=error, redrive=redrive
        )

    async def _wait_for_capacity(self) -> None:
        """Refresh the budget from Prefect when it is used up; wait while it stays empty."""
        paused = False
        while self._budget <= 0:
            running = await self.submitter.in_flight()
            self._budget = self.max_in_flight - running
            if self._budget > 0:
                break
            if not paused:
                log.info(
                    "%d flow runs in flight (bound %d): pausing consumption",
                    running,
                    self.max_in_flight,
                )
                paused = True
            await asyncio.sleep(self.capacity_poll_seconds)
        if paused:
            log.info("capacity again: resuming consumption")
