"""The result agent: brings the vector index to what the results topic says, idempotently."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from agents.decisions import ChapterState, IndexResult, Skip, decide_result
from agents.ledger import Ledger
from agents.ports import DeadLetters
from agents.retry import Backoff, retrying
from agents.telemetry import NoTelemetry, Telemetry
from agents.vector_store import VectorStore
from schemas import (
    ChapterEmbedded,
    ChapterFailed,
    ChapterRemoved,
    InvalidEvent,
    NovelRemoved,
    SourceRef,
    parse_result,
)

log = logging.getLogger("scribe.agents.result")


@dataclass(frozen=True)
class ResultMessage:
    """One raw message of the results topic with its position."""

    key: bytes | None
    value: bytes
    source: SourceRef


@dataclass
class ResultAgent:
    """For a batch: decode, decide against the ledger, write, flush once, then record.

    The ledger is updated only after the flush, so a crash between the two replays the
    batch on restart, and the upsert/delete writes make that replay harmless.
    """

    store: VectorStore
    ledger: Ledger
    dead_letters: DeadLetters
    backoff: Backoff = field(default_factory=Backoff)
    #: Results this sink applies: ``None`` the live index, else one rebuild's collection.
    target: str | None = None
    telemetry: Telemetry = field(default_factory=NoTelemetry)

    async def handle_batch(self, messages: list[ResultMessage]) -> int:
        """Apply a batch; return how many results changed the index."""
        batch = _BatchView(self.ledger, self.store)
        pending: list[tuple[IndexResult, ChapterState]] = []
        failures: list[ChapterFailed] = []
        results: list[IndexResult] = []
        for msg in messages:
            try:
                result = parse_result(msg.value)
            except InvalidEvent as exc:
                await self._dead_letter(msg, exc)
                continue
            if result.target != self.target:
                continue  # another index's result (a rebuild running beside the live one)
            if isinstance(result, ChapterFailed):
                failures.append(result)
                continue
            results.append(result)
        keys = [(r.novel_id, r.chapter_id) for r in results if not isinstance(r, NovelRemoved)]
        await retrying(partial(batch.prefetch, keys), self.backoff, "ledger")
        for result in results:
            state = await retrying(partial(self._apply, result, batch), self.backoff, "sink")
            if state is not None:
                batch.remember(result, state)
                pending.append((result, state))
        await retrying(batch.writes.apply, self.backoff, "sink write")
        if pending:
            await retrying(self.store.flush, self.backoff, "flush")
            await self._record(pending)
            for result, _ in pending:
                self._report_applied(result)
        for failure in failures:
            self.telemetry.chapter_failed()
            log.warning(
                "%s/%s@v%s failed: %s",
                failure.novel_id,
                failure.chapter_id,
                failure.version,
                failure.reason,
            )
            await retrying(
                partial(
                    self.ledger.record_failed,
                    failure.novel_id,
                    failure.chapter_id,
                    failure.version,
                    failure.flow_run_id,
                    failure.reason,
                ),
                self.backoff,
                "ledger",
            )
        return len(pending)

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

    async def _dead_letter(self, msg: ResultMessage, error: InvalidEvent) -> None:
        self.telemetry.dead_lettered(type(error).__name__)
        call = partial(
            self.dead_letters.dead_letter,
            key=msg.key,
            value=msg.value,
            source=msg.source,
            error=error,
        )
        await retrying(call, self.backoff, "dead-letter result")

    async def _apply(self, result: IndexResult, batch: _BatchView) -> ChapterState | None:
        """Write one result unless something newer won; return the chapter's new row."""
        chapter_id = getattr(result, "chapter_id", None)
        current = await batch.chapter(result.novel_id, chapter_id) if chapter_id else None
        tombstone = await batch.novel_deleted_offset(result.novel_id)
        decision = decide_result(result, current, tombstone)
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
            )
        await batch.writes.apply()  # earlier upserts of this batch land before any delete
        if isinstance(result, ChapterRemoved):
            await self.store.delete_chapter(result.novel_id, result.chapter_id)
            base = current or ChapterState(result.novel_id, result.chapter_id, result.version, True)
            return replace(
                base,
                version=result.version,
                deleted=True,
                indexed_version=None,
                chunk_count=0,
                updated_at=now,
            )
        await self.store.delete_novel(result.novel_id)
        return ChapterState(result.novel_id, "", result.version, True, updated_at=now)

    async def _record(self, pending: list[tuple[IndexResult, ChapterState]]) -> None:
        """Record the batch's effects in order: chapter rows in one call per run of them."""
        rows: list[ChapterState] = []
        for result, state in [*pending, (None, None)]:
            if rows and (result is None or isinstance(result, NovelRemoved)):
                await retrying(
                    partial(self.ledger.record_applied_many, list(rows)), self.backoff, "ledger"
                )
                rows.clear()
            if isinstance(result, NovelRemoved):
                offset = result.source.offset if result.source else -1
                await retrying(
                    partial(self.ledger.delete_novel, result.novel_id, offset),
                    self.backoff,
                    "ledger",
                )
            elif state is not None:
                rows.append(state)


def needs_trim(current: ChapterState | None, count: int) -> bool:
    """Whether chunks numbered ``count`` and above may exist for the chapter.

    The ledger describes its index: a chapter it has never indexed (only submitted, or
    deleted) has no rows, one indexed with ``count`` chunks or fewer has none past them.
    Without a row (e.g. a rebuild's fresh scope) nothing is known, so trim.
    """
    if current is None:
        return True
    if current.indexed_version is None:
        return False
    return current.chunk_count > count


class _Writes:
    """Upserts of a batch, sent as one call; trims after them."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._chapters: dict[tuple[str, str], tuple[ChapterEmbedded, bool]] = {}

    def add(self, result: ChapterEmbedded, trim: bool) -> None:
        """Queue the chapter's rows; a newer version in the batch replaces an older one."""
        key = (result.novel_id, result.chapter_id)
        earlier = self._chapters.get(key)
        self._chapters[key] = (result, trim or (earlier is not None and earlier[1]))

    async def apply(self) -> None:
        """Upsert everything queued in one call, then trim; idempotent, so safe to retry."""
        if not self._chapters:
            return
        queued = list(self._chapters.values())
        await self._store.upsert_chapters([result for result, _ in queued])
        trims = [(r.novel_id, r.chapter_id, len(r.chunks)) for r, trim in queued if trim]
        if trims:
            await self._store.trim_chapters(trims)
        self._chapters.clear()


class _BatchView:
    """The ledger as seen from inside a batch: effects applied but not yet recorded win.

    The batch's chapter rows are read in one query up front (:meth:`prefetch`), and each
    novel's tombstone once.
    """

    def __init__(self, ledger: Ledger, store: VectorStore) -> None:
        self._ledger = ledger
        self.writes = _Writes(store)
        self._chapters: dict[tuple[str, str], ChapterState | None] = {}
        self._novels: dict[str, int] = {}
        self._stored: dict[tuple[str, str], ChapterState | None] = {}
        self._tombstones: dict[str, int | None] = {}

    async def prefetch(self, keys: list[tuple[str, str]]) -> None:
        """Read the ledger rows of ``keys`` (missing ones are known to be missing)."""
        found = await self._ledger.chapters_by_key(keys)
        self._stored = {key: found.get(key) for key in keys}

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        key = (novel_id, chapter_id)
        if key in self._chapters:
            return self._chapters[key]
        if novel_id in self._novels:  # deleted earlier in this batch: no rows left
            return None
        if key in self._stored:
            return self._stored[key]
        return await self._ledger.chapter(novel_id, chapter_id)

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        if novel_id in self._novels:
            return self._novels[novel_id]
        if novel_id not in self._tombstones:
            self._tombstones[novel_id] = await self._ledger.novel_deleted_offset(novel_id)
        return self._tombstones[novel_id]

    def remember(self, result: IndexResult, state: ChapterState) -> None:
        if isinstance(result, NovelRemoved):
            self._novels[result.novel_id] = result.source.offset if result.source else -1
            for key in [k for k in self._chapters if k[0] == result.novel_id]:
                self._chapters[key] = None
        else:
            self._chapters[(state.novel_id, state.chapter_id)] = state
