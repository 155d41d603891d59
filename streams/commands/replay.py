"""``scribe replay``: reprocess history from Kafka, beside the running workers.

Two modes, two scopes:

* ``reembed`` runs the flows again under a new pipeline version; ``resink`` rebuilds the
  index from the results topic alone, without embedding.
* A *full* replay (``--from earliest``, all novels) builds a **new physical collection**
  (with its own ledger scope) while search keeps using the old one; it reads the log in
  catch-up rounds until at most ``SCRIBE_REBUILD_SWITCH_LAG`` messages were logged during
  the last one (or ``SCRIBE_REBUILD_MAX_ROUNDS`` rounds ran), points the alias at the new
  collection atomically, applies those last messages, and keeps the old collection until
  ``scribe index drop`` (``streams.commands.replay_rounds``). A *partial* replay
  (``--novel`` or ``--from <time>``) works **in place** on the live index, where the
  ledger's newest-wins rules keep it correct.

A replay never writes the index itself. The worker's result agent stays the one writer
of every novel: re-embedded chapters reach it through the results topic like any flow's
result, and a resink re-publishes results there (with the rebuild's collection as their
target) and waits until the worker has applied them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from agents.chapter_agent import ChapterAgent
from agents.live_selection import LiveSelection
from agents.vector_store import collection_for_model
from schemas import LIVE, InvalidEvent, ScribeError, SourceRef, Target, parse_event
from schemas.dead_letters import message_source
from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.publisher import KafkaResultPublisher
from streams.adapters.kafka.topic_reader import (
    ResultFeeder,
    Start,
    TopicReader,
    results_end,
    worker_behind,
)
from streams.adapters.prefect.submitter import PrefectFlowSubmitter
from streams.commands.rebuild_missing import MissingChapters, RebuildRuns
from streams.commands.replay_rounds import Plan, ReplaySummary, Tick, pump
from streams.commands.result_copies import Ancestry, Origin, resend
from streams.settings import Settings
from streams.wiring import open_ledger, pipeline, vector_store

log = logging.getLogger("scribe.replay")

Mode = Literal["reembed", "resink"]


class DiscardDeadLetters:
    """Replays skip invalid input: the live worker dead-lettered it already."""

    def __init__(self) -> None:
        self.count = 0

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Count and drop."""
        self.count += 1


async def replay(
    settings: Settings,
    mode: Mode,
    start: Start,
    novel: str | None,
    tick: Tick,
    wait_seconds: float = 1.0,
    force: bool = False,
) -> ReplaySummary:
    """Run a replay to the end (see the module docstring)."""
    began = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    full = start == "earliest" and novel is None
    admin = vector_store(settings)
    model: str | None
    if mode == "resink":  # rebuilds what the live index holds: no model is loaded
        live, model, dimension = await admin.shape()
    else:
        built = await asyncio.to_thread(pipeline, settings)
        dimension = built.dimension
        # A full rebuild writes a new collection at the model's size, whatever the live
        # one's (a model change is what it is for); in place, the sizes must agree.
        live = (await admin.physical() if full else None) or await admin.ensure_collection(
            built.model, dimension
        )
        model = built.model
    base = collection_for_model(settings.milvus_collection, model or "resink")
    target = Target(f"{base}__{stamp}") if full else LIVE
    summary = ReplaySummary(mode=mode, scope="full rebuild" if full else "in place")
    if target.collection is not None:
        await admin.create_collection(target.collection, dimension)
        summary.collection = target.collection
    plan = Plan(settings, summary, start, novel, target, live, admin, tick, wait_seconds, force)
    group = f"{settings.app_id}-replay-{stamp}"
    try:
        if mode == "reembed":
            assert model is not None
            await _reembed(plan, group, model)
        else:
            await _resink(plan, group, model, dimension)
    finally:
        summary.seconds = round(time.monotonic() - began, 1)
        await admin.close()
    return summary


async def _reembed(plan: Plan, group: str, model: str) -> None:
    settings, summary = plan.settings, plan.summary
    stamp = group.rsplit("-", 1)[1]
    pv = f"{pipeline(settings).version}+replay{stamp}"
    #: Names and tags the replay's batch runs in Prefect's UI (agents.batches).
    label = f"{'replay' if plan.target.live else 'rebuild'}-{stamp}"
    summary.pipeline_version = pv
    # The rebuild's own books (its pending submissions), or the live collection's.
    ledger = await open_ledger(settings, scope=plan.target.collection or plan.live)
    prefect = PrefectFlowSubmitter(settings.deployment)
    tag = f"rebuild:{plan.target.collection}"  # in place: "rebuild:None", which no run has
    submitter = RebuildRuns(prefect, tag)
    kafka = KafkaConnection.from_settings(settings)
    publisher = KafkaResultPublisher(settings.topic_embeddings, kafka, settings.max_result_bytes)
    dlq = DiscardDeadLetters()
    agent = ChapterAgent(
        submitter=submitter,
        results=publisher,
        dead_letters=dlq,
        ledger=ledger,
        pipeline_version=pv,
        max_text_bytes=settings.max_text_bytes,
        max_in_flight=settings.in_flight_bound,
        target=plan.target,
    )
    events = TopicReader(kafka, settings.topic_events, group, settings.max_result_bytes)
    await events.start(plan.start)

    # Each round's range is read whole first; then only each chapter's newest live write
    # runs (and every deletion is passed on): a chapter revised fifty times is one run.
    selection: LiveSelection[Any] = LiveSelection()

    async def feed(messages: list[Any]) -> None:
        for m in messages:
            if not plan.wanted(m.key):
                continue
            source, redrive = message_source(
                m.topic, m.partition, m.offset, m.timestamp, list(m.headers or ())
            )
            try:
                event = parse_event(m.value, max_text_bytes=settings.max_text_bytes)
            except InvalidEvent:
                event = None
            if event is None or m.key != event.novel_id.encode():
                dlq.count += 1  # the live worker dead-lettered it already
                continue
            selection.add(event, (source.partition, source.offset), (m, source, redrive))

    async def run_selected() -> None:
        """Hand the round's selection to the chapter agent: its deletions, then its writes
        in batch runs (``SCRIBE_REPLAY_BATCH_CHAPTERS``)."""
        nonlocal selection
        done, selection = selection, LiveSelection()
        summary.versions_skipped += done.skipped + done.duplicates
        selected = [(m.key, m.value, source, redrive) for m, source, redrive in done.selected()]
        runs = await agent.handle_batch(
            selected, label, settings.replay_batch_chapters, settings.max_text_bytes
        )
        summary.runs_submitted += len(runs)
        summary.chapters_submitted += sum(chapters for _, chapters in runs)

    async def settle() -> None:
        """Wait until every run the rebuild submitted has ended and the worker has applied
        the results topic up to its end *as read once they had ended* (their results are
        below it). Not an end read again at each check: live results keep moving it, and
        under steady traffic the worker was never caught up with it. Not the ledger's
        pending rows either: live runs add to them after the switch, and a write standing
        before its novel's deletion can leave one that no result clears."""
        while (running := await submitter.in_flight(tag)) > 0:
            log.debug("%d runs of the rebuild in flight", running)
            await asyncio.sleep(plan.wait_seconds)
        results, worker = settings.topic_embeddings, settings.app_id
        ends = await results_end(kafka, results)
        while (behind := await worker_behind(kafka, worker, results, ends)) > 0:
            log.debug("the worker has %d results of the round left to apply", behind)
            await asyncio.sleep(plan.wait_seconds)

    live_books = None if plan.target.live else await open_ledger(settings, scope=plan.live)
    try:
        missing = MissingChapters(submitter, live_books, ledger) if live_books else None
        await pump(plan, events, feed, settle, missing, end_round=run_selected)
    finally:
        summary.invalid_skipped = dlq.count
        await events.stop()
        await prefect.close()
        if live_books is not None:
            await live_books.close()
        await publisher.close()
        await ledger.close()


async def _resink(plan: Plan, group: str, model: str | None, dimension: int) -> None:
    """Feed the results topic to the worker again, for the live index or a rebuild."""
    settings, summary = plan.settings, plan.summary
    kafka, topic = KafkaConnection.from_settings(settings), settings.topic_embeddings
    results = TopicReader(kafka, topic, group, settings.max_result_bytes)
    await results.start(plan.start)
    producer = await start_producer(kafka, settings.max_result_bytes)
    feeder = ResultFeeder(kafka, producer, topic, settings.app_id)

    selected = (LIVE, Target(plan.live))

    async def feed(messages: list[Any]) -> None:
        for m in messages:
            if not plan.wanted(m.key):
                continue
            try:
                out = resend(
                    m.value, live=plan.live, target=plan.target, model=model, dimension=dimension
                )
            except InvalidEvent:
                summary.invalid_skipped += 1
                continue
            if out is None:
                continue
            ancestry = Ancestry.from_headers(list(m.headers or ()))
            if ancestry.repeats_one_of(selected, results.has_read):
                summary.copies_skipped += 1  # this replay re-sent the same content already
                continue
            origin = Origin(m.partition, m.offset, out.original_target)
            await feeder.send(m.key, out.value, ancestry.copied_as(origin).headers())
            summary.results_sent += 1

    async def settle() -> None:
        await feeder.drained(plan.wait_seconds)

    try:
        await pump(plan, results, feed, settle)
        await feeder.drained(plan.wait_seconds)
    finally:
        await results.stop()
        await producer.stop()
