"""The chapter agent: one input event in, one durable effect out, in log order per novel."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agents.decisions import PublishRemoval, SubmitFlowRun, plan_event
from agents.ports import DeadLetters, FlowSubmitter, ResultWriter
from agents.retry import Backoff, retrying
from schemas import InvalidEvent, SchemaViolation, SourceRef, parse_event

log = logging.getLogger("scribe.agents.chapter")


@dataclass
class ChapterAgent:
    """Decode -> plan (pure) -> call a port; returns only once the effect is durable.

    Chapter writes become Prefect flow runs (acknowledged when Prefect accepted the run);
    deletions go straight to the results topic, where the sink orders them against
    embeddings by version. Invalid input is dead-lettered; retriable failures are retried
    with capped backoff, so the caller's offset is committed only after success.
    """

    submitter: FlowSubmitter
    results: ResultWriter
    dead_letters: DeadLetters
    pipeline_version: str
    max_text_bytes: int
    backoff: Backoff = field(default_factory=Backoff)

    async def handle(self, key: bytes | None, value: bytes, source: SourceRef) -> str | None:
        """Process one message; return the flow-run id when one was submitted."""
        try:
            event = parse_event(value, max_text_bytes=self.max_text_bytes)
            if key is not None and key != event.novel_id.encode():
                raise SchemaViolation(
                    f"message key {key!r} must be the novel_id {event.novel_id!r} "
                    "(events of a novel must share a partition to stay ordered)"
                )
        except InvalidEvent as exc:
            error = exc
            log.warning("dead-lettering %s: %s: %s", source, type(exc).__name__, exc.reason)
            await retrying(
                lambda: self.dead_letters.dead_letter(
                    key=key, value=value, source=source, error=error
                ),
                self.backoff,
                "dead-letter",
            )
            return None
        plan = plan_event(event, source, self.pipeline_version)
        if isinstance(plan, SubmitFlowRun):
            run_id = await retrying(
                lambda: self.submitter.submit(
                    name=plan.name,
                    idempotency_key=plan.idempotency_key,
                    tags=plan.tags,
                    parameters=plan.parameters,
                ),
                self.backoff,
                f"submit {plan.name}",
            )
            log.info("submitted flow run %s (%s) for %s", plan.name, run_id, source)
            return run_id
        assert isinstance(plan, PublishRemoval)
        await retrying(lambda: self.results.publish(plan.result), self.backoff, "publish removal")
        log.info("published %s for novel %s", plan.result.event_type, plan.result.novel_id)
        return None
