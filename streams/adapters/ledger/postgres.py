"""The chapter ledger in PostgreSQL through asyncpg (production; many workers share it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents.decisions import ChapterState
from agents.ledger import LedgerSummary, LedgerUnavailable
from streams.adapters.ledger import sql as q


def _now() -> datetime:
    return datetime.now(UTC)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which the same statement can succeed: the server is away, restarting
    (``AdminShutdownError``, ``CannotConnectNowError`` while it starts), out of
    connections, or the connection broke. Anything else is the statement's own fault."""
    import asyncpg  # type: ignore[import-untyped]
    from asyncpg import exceptions as e

    return (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        e.AdminShutdownError,
        e.CrashShutdownError,
        e.CannotConnectNowError,
        e.TooManyConnectionsError,
        e.ConnectionFailureError,
    )


class PostgresLedger:
    """asyncpg pool; tables are created on :meth:`connect` if missing."""

    def __init__(self, dsn: str, scope: str = "novel_chunks", pool_size: int = 4) -> None:
        self._dsn = dsn
        self._scope = scope
        self._pool_size = pool_size
        self._pool: Any = None

    async def connect(self) -> PostgresLedger:
        """Open the pool and create the tables."""
        import asyncpg

        pool: Any = None
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)
            async with pool.acquire() as conn:
                for ddl in q.DDL:
                    await conn.execute(ddl.format(ts="TIMESTAMPTZ"))
                for table, column, kind in q.ADDED_COLUMNS:
                    await conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
                    )
        except transient_errors() as exc:
            if pool is not None:
                await pool.close()
            raise LedgerUnavailable(f"ledger database unreachable: {exc}") from exc
        self._pool = pool
        return self

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        if self._pool is None:
            await self.connect()
        try:
            return await getattr(self._pool, method)(sql, *args)
        except transient_errors() as exc:
            raise LedgerUnavailable(f"ledger: {exc}") from exc

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """Row lookup."""
        row = await self._call("fetchrow", q.SELECT_CHAPTER, self._scope, novel_id, chapter_id)
        return None if row is None else q.row_to_state(row)

    async def chapters_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ChapterState]:
        """See :meth:`agents.ledger.Ledger.chapters_by_key`."""
        unique = list(dict.fromkeys(keys))
        states: dict[tuple[str, str], ChapterState] = {}
        for start in range(0, len(unique), q.KEYS_PER_SELECT):
            part = unique[start : start + q.KEYS_PER_SELECT]
            args = [x for key in part for x in key]
            for row in await self._call("fetch", q.select_chapters(len(part)), self._scope, *args):
                state = q.row_to_state(row)
                states[(state.novel_id, state.chapter_id)] = state
        return states

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Tombstone lookup."""
        value = await self._call("fetchval", q.SELECT_TOMBSTONE, self._scope, novel_id)
        return None if value is None else int(value)

    async def record_applied(self, state: ChapterState) -> None:
        """See :meth:`agents.ledger.Ledger.record_applied`."""
        await self.record_applied_many([state])

    async def record_applied_many(self, states: Sequence[ChapterState]) -> None:
        """See :meth:`agents.ledger.Ledger.record_applied_many` (one ``executemany``)."""
        rows = [q.applied_args(self._scope, s, _now()) for s in states]
        if rows:
            await self._call("executemany", q.RECORD_APPLIED, rows)

    async def record_submitted(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str
    ) -> None:
        """See :meth:`agents.ledger.Ledger.record_submitted`."""
        await self._call(
            "execute",
            q.RECORD_SUBMITTED,
            self._scope,
            novel_id,
            chapter_id,
            version,
            flow_run_id,
            _now(),
        )

    async def record_failed(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str | None, error: str
    ) -> None:
        """See :meth:`agents.ledger.Ledger.record_failed`."""
        await self._call(
            "execute",
            q.RECORD_FAILED,
            self._scope,
            novel_id,
            chapter_id,
            version,
            flow_run_id,
            error,
            _now(),
        )

    async def chapters_of_novel(self, novel_id: str) -> list[ChapterState]:
        """See :meth:`agents.ledger.Ledger.chapters_of_novel`."""
        rows = await self._call("fetch", q.SELECT_NOVEL_CHAPTERS, self._scope, novel_id)
        return [q.row_to_state(r) for r in rows]

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop rows and keep the highest tombstone, in one transaction."""
        if self._pool is None:
            await self.connect()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(q.DELETE_NOVEL_CHAPTERS, self._scope, novel_id, offset)
                await conn.execute(q.UPSERT_TOMBSTONE, self._scope, novel_id, offset, _now())
        except transient_errors() as exc:
            raise LedgerUnavailable(f"ledger: {exc}") from exc

    async def drop_scope(self) -> None:
        """See :meth:`agents.ledger.Ledger.drop_scope`."""
        if self._pool is None:
            await self.connect()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for statement in q.DROP_SCOPE:
                    await conn.execute(statement, self._scope)
        except transient_errors() as exc:
            raise LedgerUnavailable(f"ledger: {exc}") from exc

    async def removals_applied(self, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`agents.ledger.Ledger.removals_applied`."""
        unique = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(unique), q.KEYS_PER_SELECT):
            part = unique[start : start + q.KEYS_PER_SELECT]
            rows = await self._call("fetch", q.select_removals(len(part)), self._scope, *part)
            found |= {str(r[0]) for r in rows}
        return found

    async def record_removals(self, event_ids: Sequence[str]) -> None:
        """See :meth:`agents.ledger.Ledger.record_removals`."""
        now = _now()
        if event_ids:
            await self._call(
                "executemany", q.RECORD_REMOVAL, [(self._scope, e, now) for e in event_ids]
            )

    async def counts(self) -> dict[str, int]:
        """Counts by status."""
        rows = await self._call("fetch", q.COUNTS, self._scope)
        return {**q.EMPTY_COUNTS, **{str(r[0]): int(r[1]) for r in rows}}

    async def chapters(self, status: str, limit: int = 50) -> list[ChapterState]:
        """Rows in ``status``, newest first."""
        rows = await self._call("fetch", q.LIST_BY_STATUS, self._scope, status, limit)
        return [q.row_to_state(r) for r in rows]

    async def summary(self, pending_before: datetime) -> LedgerSummary:
        """See :meth:`agents.ledger.Ledger.summary`."""
        rows = await self._call("fetchval", q.INDEXED_ROWS, self._scope)
        stale = await self._call("fetchval", q.STALE_PENDING, self._scope, pending_before)
        oldest = await self._call("fetchrow", q.OLDEST_PENDING, self._scope)
        return LedgerSummary(
            int(rows), int(stale), None if oldest is None else q.row_to_state(oldest)
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
