"""The result agent: brings the vector index to what the results topic says, idempotently."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from agents.checkpoint import Checkpoint
from agents.decisions import (
    ChapterState,
    IndexResult,
    Skip,
    decide_failure,
    decide_result,
    outlives_novel_deletion,
)
from agents.ports import DeadLetters, Index, IndexCatalog
from agents.retry import Backoff, retried
from agents.sink_batch import BatchView, needs_trim
from agents.telemetry import NoTelemetry, Telemetry
from agents.vector_store import VectorStore
from schemas import (
    ChapterEmbedded,
    ChapterFailed,
    ChapterRemoved,
    InvalidEvent,
    NovelRemoved,
    RecreatedBelowDeletion,
    ScribeError,
    SourceRef,
    Target,
    parse_result,
)
from schemas.failpoints import failpoint

log = logging.getLogger("scribe.agents.result")


@dataclass(frozen=True)
class ResultMessage:
    """One raw message of the results topic with its position."""

    key: bytes | None
    value: bytes | None
    source: SourceRef


@dataclass
class ResultAgent:
    """The one writer of the index: for a batch, decode, decide against the ledger, write,
    flush once, then record.

    Every result of a novel reaches this agent through the novel's partition of the results
    topic (live flows, replays, resinks and redrives all publish there), so no two writers
    ever race on a chapter. Results go to the index :attr:`catalog` resolves for their
    ``target``: live ones to the collection the alias points at now, a rebuild's to its
    own collection; each collection has its own ledger scope.

    Each index's share commits in the order :mod:`agents.checkpoint` names (write, flush,
    record; the worker commits the offsets after), so a crash anywhere replays the batch
    on restart, and the upsert/delete writes make that replay harmless. A result
    Milvus rejects as invalid (not retriable) is dead-lettered with the reason and the
    batch goes on.
    """

    catalog: IndexCatalog
    dead_letters: DeadLetters
    backoff: Backoff = field(default_factory=Backoff)
    telemetry: Telemetry = field(default_factory=NoTelemetry)
    #: Retriable failures in a row on one index before it is resolved again.
    reresolve_attempts: int = 6

    def __post_init__(self) -> None:
        # Each port once, with the agent's backoff; an index's store and ledger each time
        # the index is resolved, with the bounded backoff (see :meth:`_apply_to_target`).
        self.catalog = retried(self.catalog, self.backoff, "index catalog")
        self.dead_letters = retried(self.dead_letters, self.backoff, "dead letters")

    async def handle_batch(self, messages: list[ResultMessage]) -> int:
        """Apply a batch; return how many results changed the index."""
        groups: dict[Target, list[tuple[IndexResult, ResultMessage]]] = {}
        failures: list[ChapterFailed] = []
        for msg in messages:
            try:
                result = parse_result(msg.value)
            except InvalidEvent as exc:
                await self._dead_letter(msg, exc)
                continue
            if isinstance(result, ChapterFailed):
                failures.append(result)
            else:
                groups.setdefault(result.target, []).append((result, msg))
        applied = 0
        for target, items in groups.items():
            applied += await self._apply_to_target(target, items)
        for failure in failures:
            await self._record_failure(failure)
        if applied:
            failpoint("sink.after_ledger")
        return applied

    async def _apply_to_target(
        self, target: Target, items: list[tuple[IndexResult, ResultMessage]]
    ) -> int:
        """Apply one target's share of a batch to the index it resolves to now.

        After ``reresolve_attempts`` retriable failures in a row the index is looked up
        again: the alias may have moved, or a rebuild's collection been dropped, meanwhile
        (its results are then skipped), instead of retrying a gone collection for good.
        Re-applying the share is harmless: writes are upserts and the ledger is written
        last.
        """
        while True:
            index = await self.catalog.resolve(target)
            if index is None:
                log.info("skip %d results for %s: the collection is gone", len(items), target)
                return 0
            try:
                return await self._apply_to(self._retried(index, self._bounded), items)
            except ScribeError as exc:
                if not exc.retriable:
                    raise
                log.warning(
                    "writing %d results to %s keeps failing (%s); looking the index up again",
                    len(items),
                    index.name,
                    exc.reason,
                )

    @property
    def _bounded(self) -> Backoff:
        """The backoff of calls to one resolved index: bounded, then it is looked up again."""
        return replace(self.backoff, attempts=self.reresolve_attempts)

    @staticmethod
    def _retried(index: Index, backoff: Backoff) -> Index:
        """``index`` with its store and ledger retried with ``backoff``."""
        return Index(
            index.name,
            retried(index.store, backoff, f"store {index.name}"),
            retried(index.ledger, backoff, f"ledger {index.name}"),
        )

    async def _apply_to(self, index: Index, items: list[tuple[IndexResult, ResultMessage]]) -> int:
        """Apply one index's share of a batch."""
        batch = BatchView(index.ledger, index.store)
        pending: list[tuple[IndexResult, ChapterState]] = []
        sources: dict[int, ResultMessage] = {id(result): msg for result, msg in items}
        keys = [(r.novel_id, r.chapter_id) for r, _ in items if not isinstance(r, NovelRemoved)]
        removals = [str(r.event_id) for r, _ in items if not isinstance(r, ChapterEmbedded)]
        await batch.prefetch(keys, removals)
        for result, msg in items:
            try:
                state = await self._apply(result, batch, index.store)
            except ScribeError as exc:
                if exc.retriable:  # the index kept failing: looked up again by the caller
                    raise
                await self._dead_letter(msg, exc)  # Milvus rejected it, or it never wins
                continue
            if state is not None:
                batch.remember(result, state)
                pending.append((result, state))
        checkpoint = Checkpoint(index)
        rejected = await checkpoint.write(batch.writes)
        for result, error in rejected:
            await self._dead_letter(sources[id(result)], error)
        refused = {id(result) for result, _ in rejected}
        pending = [(r, state) for r, state in pending if id(r) not in refused]
        if pending:
            await checkpoint.flush()
            await checkpoint.record(pending)
            for result, _ in pending:
                self._report_applied(result)
        return len(pending)

    async def _record_failure(self, failure: ChapterFailed) -> None:
        self.telemetry.chapter_failed()
        log.warning(
            "%s/%s@v%s failed: %s",
            failure.novel_id,
            failure.chapter_id,
            failure.version,
            failure.reason,
        )
        resolved = await self.catalog.resolve(failure.target)
        if resolved is None:
            return
        ledger = self._retried(resolved, self.backoff).ledger
        # Read after the batch's own records: a success in the same batch counts.
        current = await ledger.chapter(failure.novel_id, failure.chapter_id)
        tombstone = await ledger.novel_deleted_offset(failure.novel_id)
        decision = decide_failure(failure, current, tombstone)
        if isinstance(decision, Skip):
            log.info(
                "not recording the failure of %s/%s@v%s: %s",
                failure.novel_id,
                failure.chapter_id,
                failure.version,
                decision.reason,
            )
            return
        await ledger.record_failed(
            failure.novel_id,
            failure.chapter_id,
            failure.version,
            failure.flow_run_id,
            failure.reason,
        )

    def _report_applied(self, result: IndexResult) -> None:
        rows = len(result.chunks) if isinstance(result, ChapterEmbedded) else 0
        latency = None
        if result.source is not None and result.source.timestamp_ms is not None:
            latency = max(0.0, time.time() - result.source.timestamp_ms / 1000)
        self.telemetry.result_applied(result.event_type, rows, latency)
        log.info(
            "applied %s %s/%s@v%s",
            result.event_type,
            result.novel_id,
            getattr(result, "chapter_id", "*"),
            result.version,
            extra={
                "event_id": str(result.event_id),
                "novel_id": result.novel_id,
                "chapter_id": getattr(result, "chapter_id", None),
                "version": result.version,
                "flow_run_id": getattr(result, "flow_run_id", None),
                "rows": rows,
            },
        )

    async def _dead_letter(self, msg: ResultMessage, error: ScribeError) -> None:
        self.telemetry.dead_lettered(type(error).__name__)
        await self.dead_letters.dead_letter(
            key=msg.key, value=msg.value, source=msg.source, error=error
        )

    async def _apply(
        self, result: IndexResult, batch: BatchView, store: VectorStore
    ) -> ChapterState | None:
        """Write one result unless something newer won; return the chapter's new row."""
        chapter_id = getattr(result, "chapter_id", None)
        current = await batch.chapter(result.novel_id, chapter_id) if chapter_id else None
        tombstone = await batch.novel_deleted_offset(result.novel_id)
        decision = decide_result(result, current, tombstone)
        if not isinstance(result, ChapterEmbedded) and batch.removal_applied(result.event_id):
            # A deletion event re-sent later in the log: its first copy already applied, and
            # applying the copy at its later position would delete what came in between.
            decision = Skip("a copy of this deletion event was applied already")
        if isinstance(decision, Skip) and decision.dead_letter:
            log.warning("dead-lettering %s: %s", result.event_type, decision.reason)
            raise RecreatedBelowDeletion(decision.reason)
        if isinstance(decision, Skip):
            self.telemetry.result_skipped(result.event_type)
            log.info(
                "skip %s %s@v%s: %s",
                result.event_type,
                result.novel_id,
                result.version,
                decision.reason,
            )
            return None
        now = datetime.now(UTC)
        position = result.source.offset if result.source is not None else None
        if isinstance(result, ChapterEmbedded):
            batch.writes.add(result, trim=needs_trim(current, len(result.chunks)))
            return ChapterState(
                novel_id=result.novel_id,
                chapter_id=result.chapter_id,
                version=result.version,
                deleted=False,
                indexed_version=result.version,
                model=result.model,
                chunk_count=len(result.chunks),
                flow_run_id=result.flow_run_id,
                updated_at=now,
                source_offset=position,
            )
        await batch.writes.apply()  # earlier upserts of this batch land before any delete
        if isinstance(result, ChapterRemoved):
            await store.delete_chapter(result.novel_id, result.chapter_id)
            base = current or ChapterState(result.novel_id, result.chapter_id, result.version, True)
            return replace(
                base,
                version=result.version,
                deleted=True,
                indexed_version=None,
                chunk_count=0,
                updated_at=now,
                source_offset=position,
                deleted_offset=result.source.offset if result.source else None,
            )
        # Chapters written again after the deletion stay (their results came first here).
        deleted_at = -1 if position is None else position
        later = [
            c.chapter_id
            for c in await batch.novel_chapters(result.novel_id)
            if outlives_novel_deletion(c, deleted_at) and not c.deleted
        ]
        await store.delete_novel(result.novel_id, keep=later)
        return ChapterState(result.novel_id, "", result.version, True, updated_at=now)
