"""The chapter ledger in a SQLite file (the embedded default; one host)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.decisions import ChapterState
from agents.ledger import LedgerSummary, LedgerUnavailable
from streams.adapters.ledger import sql as q


def _now() -> datetime:
    return datetime.now(UTC)


class SqliteLedger:
    """Ledger in a SQLite file (the embedded default); one worker process at a time.

    Calls run in a worker thread so the event loop never waits on the disk.
    """

    def __init__(self, path: Path, scope: str = "novel_chunks") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._scope = scope
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        for ddl in q.DDL:
            self._db.execute(ddl.format(ts="TEXT"))
        for table, column, kind in q.ADDED_COLUMNS:  # a file of an older release
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._lock = asyncio.Lock()

    async def _run(self, fn: Any) -> Any:
        async with self._lock:
            try:
                return await asyncio.to_thread(fn)
            except sqlite3.OperationalError as exc:  # locked, disk full, ...
                raise LedgerUnavailable(f"ledger: {exc}") from exc

    def _exec(self, sql: str, *args: Any) -> Any:
        return self._db.execute(q.for_sqlite(sql), args)

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """Row lookup."""
        row = await self._run(
            lambda: self._exec(q.SELECT_CHAPTER, self._scope, novel_id, chapter_id).fetchone()
        )
        return None if row is None else q.row_to_state(row)

    async def chapters_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ChapterState]:
        """See :meth:`Ledger.chapters_by_key`."""
        unique = list(dict.fromkeys(keys))

        def run() -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(unique), q.KEYS_PER_SELECT):
                part = unique[start : start + q.KEYS_PER_SELECT]
                args = [x for key in part for x in key]
                rows += self._exec(q.select_chapters(len(part)), self._scope, *args).fetchall()
            return rows

        states = [q.row_to_state(r) for r in await self._run(run)] if unique else []
        return {(s.novel_id, s.chapter_id): s for s in states}

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Tombstone lookup."""
        row = await self._run(
            lambda: self._exec(q.SELECT_TOMBSTONE, self._scope, novel_id).fetchone()
        )
        return None if row is None else int(row[0])

    async def record_applied(self, state: ChapterState) -> None:
        """See :meth:`Ledger.record_applied`."""
        await self.record_applied_many([state])

    async def record_applied_many(self, states: Sequence[ChapterState]) -> None:
        """See :meth:`Ledger.record_applied_many`."""
        rows = [
            (*args[:10], args[10].isoformat(), *args[11:])  # $11 is the time
            for args in (q.applied_args(self._scope, s, _now()) for s in states)
        ]

        def run() -> None:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(q.for_sqlite(q.RECORD_APPLIED), rows)

        if rows:
            await self._run(run)

    async def record_submitted(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str
    ) -> None:
        """See :meth:`Ledger.record_submitted`."""
        now = _now().isoformat()
        await self._run(
            lambda: self._exec(
                q.RECORD_SUBMITTED, self._scope, novel_id, chapter_id, version, flow_run_id, now
            )
        )

    async def record_failed(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str | None, error: str
    ) -> None:
        """See :meth:`Ledger.record_failed`."""
        now = _now().isoformat()
        await self._run(
            lambda: self._exec(
                q.RECORD_FAILED, self._scope, novel_id, chapter_id, version, flow_run_id, error, now
            )
        )

    async def chapters_of_novel(self, novel_id: str) -> list[ChapterState]:
        """See :meth:`Ledger.chapters_of_novel`."""
        rows = await self._run(
            lambda: self._exec(q.SELECT_NOVEL_CHAPTERS, self._scope, novel_id).fetchall()
        )
        return [q.row_to_state(r) for r in rows]

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop rows and keep the highest tombstone offset, in one transaction."""

        def run() -> None:
            with self._db:
                self._db.execute("BEGIN")
                self._exec(q.DELETE_NOVEL_CHAPTERS, self._scope, novel_id, offset)
                self._exec(q.UPSERT_TOMBSTONE, self._scope, novel_id, offset, _now().isoformat())

        await self._run(run)

    async def drop_scope(self) -> None:
        """See :meth:`agents.ledger.Ledger.drop_scope`."""

        def run() -> None:
            with self._db:
                self._db.execute("BEGIN")
                for statement in q.DROP_SCOPE:
                    self._exec(statement, self._scope)

        await self._run(run)

    async def removals_applied(self, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`Ledger.removals_applied`."""
        unique = list(dict.fromkeys(event_ids))

        def run() -> set[str]:
            found: set[str] = set()
            for start in range(0, len(unique), q.KEYS_PER_SELECT):
                part = unique[start : start + q.KEYS_PER_SELECT]
                rows = self._exec(q.select_removals(len(part)), self._scope, *part).fetchall()
                found |= {str(r[0]) for r in rows}
            return found

        return set(await self._run(run)) if unique else set()

    async def record_removals(self, event_ids: Sequence[str]) -> None:
        """See :meth:`Ledger.record_removals`."""
        now = _now().isoformat()
        rows = [(self._scope, e, now) for e in event_ids]

        def run() -> None:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(q.for_sqlite(q.RECORD_REMOVAL), rows)

        if rows:
            await self._run(run)

    async def counts(self) -> dict[str, int]:
        """Counts by status."""
        rows = await self._run(lambda: self._exec(q.COUNTS, self._scope).fetchall())
        return {**q.EMPTY_COUNTS, **{str(s): int(n) for s, n in rows}}

    async def chapters(self, status: str, limit: int = 50) -> list[ChapterState]:
        """Rows in ``status``, newest first."""
        rows = await self._run(
            lambda: self._exec(q.LIST_BY_STATUS, self._scope, status, limit).fetchall()
        )
        return [q.row_to_state(r) for r in rows]

    async def summary(self, pending_before: datetime) -> LedgerSummary:
        """See :meth:`agents.ledger.Ledger.summary` (timestamps are UTC ISO 8601 text)."""
        cutoff = pending_before.astimezone(UTC).isoformat()

        def run() -> LedgerSummary:
            rows = self._exec(q.INDEXED_ROWS, self._scope).fetchone()[0]
            stale = self._exec(q.STALE_PENDING, self._scope, cutoff).fetchone()[0]
            oldest = self._exec(q.OLDEST_PENDING, self._scope).fetchone()
            return LedgerSummary(
                int(rows), int(stale), None if oldest is None else q.row_to_state(oldest)
            )

        summary: LedgerSummary = await self._run(run)
        return summary

    async def close(self) -> None:
        """Close the file."""
        await self._run(self._db.close)
