"""The chapter ledger: per chapter, the newest version seen and what the index holds.

It is the read model that makes the sink idempotent and order-proof: every result is
checked against it (``agents.decisions.decide_result``) before it touches the index, and
recorded in it after the index write is durable. Kafka stays the source of truth: a lost
ledger is rebuilt by replaying the results topic.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from agents.decisions import ChapterState


class Ledger(Protocol):
    """Storage of :class:`ChapterState` rows and novel tombstones."""

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """The chapter's row, if any."""
        ...

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Source offset of the novel's newest applied deletion, if any."""
        ...

    async def save_chapter(self, state: ChapterState) -> None:
        """Insert or replace the chapter's row."""
        ...

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop the novel's chapter rows and record its tombstone at ``offset``."""
        ...

    async def counts(self) -> dict[str, int]:
        """Chapters by status: ``indexed`` and ``deleted``."""
        ...

    async def close(self) -> None:
        """Release the storage."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class InMemoryLedger:
    """Fake ledger for unit tests."""

    def __init__(self) -> None:
        self.chapters: dict[tuple[str, str], ChapterState] = {}
        self.novels: dict[str, int] = {}

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """Row lookup."""
        return self.chapters.get((novel_id, chapter_id))

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Tombstone lookup."""
        return self.novels.get(novel_id)

    async def save_chapter(self, state: ChapterState) -> None:
        """Store the row."""
        self.chapters[(state.novel_id, state.chapter_id)] = state

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop rows, keep the tombstone."""
        for key in [k for k in self.chapters if k[0] == novel_id]:
            del self.chapters[key]
        self.novels[novel_id] = max(offset, self.novels.get(novel_id, -1))

    async def counts(self) -> dict[str, int]:
        """Counts by status."""
        deleted = sum(1 for s in self.chapters.values() if s.deleted)
        return {"indexed": len(self.chapters) - deleted, "deleted": deleted}

    async def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chapters (
    novel_id TEXT NOT NULL, chapter_id TEXT NOT NULL, version INTEGER NOT NULL,
    deleted INTEGER NOT NULL, indexed_version INTEGER, model TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0, flow_run_id TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (novel_id, chapter_id));
CREATE TABLE IF NOT EXISTS novel_tombstones (
    novel_id TEXT PRIMARY KEY, deleted_offset INTEGER NOT NULL, updated_at TEXT NOT NULL);
"""


class SqliteLedger:
    """Ledger in a SQLite file (the embedded default); one writer process at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = asyncio.Lock()

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """Row lookup."""
        row = self._db.execute(
            "SELECT novel_id, chapter_id, version, deleted, indexed_version, model, chunk_count,"
            " flow_run_id, updated_at FROM chapters WHERE novel_id = ? AND chapter_id = ?",
            (novel_id, chapter_id),
        ).fetchone()
        if row is None:
            return None
        return ChapterState(
            novel_id=row[0],
            chapter_id=row[1],
            version=row[2],
            deleted=bool(row[3]),
            indexed_version=row[4],
            model=row[5],
            chunk_count=row[6],
            flow_run_id=row[7],
            updated_at=datetime.fromisoformat(row[8]),
        )

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Tombstone lookup."""
        row = self._db.execute(
            "SELECT deleted_offset FROM novel_tombstones WHERE novel_id = ?", (novel_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    async def save_chapter(self, state: ChapterState) -> None:
        """Upsert the row."""
        async with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO chapters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.novel_id,
                    state.chapter_id,
                    state.version,
                    int(state.deleted),
                    state.indexed_version,
                    state.model,
                    state.chunk_count,
                    state.flow_run_id,
                    (state.updated_at or _now()).isoformat(),
                ),
            )

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop rows and keep the highest tombstone offset, in one transaction."""
        async with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM chapters WHERE novel_id = ?", (novel_id,))
                self._db.execute(
                    "INSERT INTO novel_tombstones VALUES (?, ?, ?) ON CONFLICT(novel_id) DO UPDATE"
                    " SET deleted_offset = max(deleted_offset, excluded.deleted_offset),"
                    " updated_at = excluded.updated_at",
                    (novel_id, offset, _now().isoformat()),
                )

    async def counts(self) -> dict[str, int]:
        """Counts by status."""
        rows = self._db.execute("SELECT deleted, count(*) FROM chapters GROUP BY deleted")
        by = {bool(d): int(n) for d, n in rows}
        return {"indexed": by.get(False, 0), "deleted": by.get(True, 0)}

    async def close(self) -> None:
        """Close the file."""
        self._db.close()
