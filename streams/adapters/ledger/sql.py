"""SQL of the chapter ledger, written once for PostgreSQL and translated for SQLite."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from agents.decisions import ChapterState

COLUMNS = (
    "novel_id, chapter_id, version, deleted, indexed_version, model, chunk_count, flow_run_id,"
    " updated_at, latest_version, failed_version, error, source_offset, deleted_offset"
)

STATUS = (
    "CASE WHEN failed_version IS NOT NULL AND failed_version >= GREATEST(latest_version, version)"
    " THEN 'failed' WHEN latest_version > version THEN 'pending'"
    " WHEN deleted THEN 'deleted' ELSE 'indexed' END"
)

DDL = [
    """CREATE TABLE IF NOT EXISTS scribe_chapters (
        scope TEXT NOT NULL, novel_id TEXT NOT NULL, chapter_id TEXT NOT NULL,
        version BIGINT NOT NULL, deleted BOOLEAN NOT NULL, indexed_version BIGINT,
        model TEXT, chunk_count BIGINT NOT NULL, flow_run_id TEXT,
        latest_version BIGINT NOT NULL, failed_version BIGINT, error TEXT,
        created_at {ts} NOT NULL, updated_at {ts} NOT NULL, source_offset BIGINT,
        deleted_offset BIGINT,
        PRIMARY KEY (scope, novel_id, chapter_id))""",
    """CREATE TABLE IF NOT EXISTS scribe_novels (
        scope TEXT NOT NULL, novel_id TEXT NOT NULL, deleted_offset BIGINT NOT NULL,
        updated_at {ts} NOT NULL, PRIMARY KEY (scope, novel_id))""",
    """CREATE TABLE IF NOT EXISTS scribe_removals (
        scope TEXT NOT NULL, event_id TEXT NOT NULL, applied_at {ts} NOT NULL,
        PRIMARY KEY (scope, event_id))""",
]

#: Columns added after the first release, for tables created before them (each adapter
#: adds a missing one when it connects): (table, column, type).
ADDED_COLUMNS = [
    ("scribe_chapters", "source_offset", "BIGINT"),
    ("scribe_chapters", "deleted_offset", "BIGINT"),
]

_INSERT = (
    "INSERT INTO scribe_chapters (scope, novel_id, chapter_id, version, deleted,"
    " indexed_version, model, chunk_count, flow_run_id, latest_version, failed_version, error,"
    " created_at, updated_at) "
)
_CONFLICT = " ON CONFLICT (scope, novel_id, chapter_id) DO UPDATE SET "
_OLD = "scribe_chapters."

SELECT_CHAPTER = (
    f"SELECT {COLUMNS} FROM scribe_chapters WHERE scope = $1 AND novel_id = $2 AND chapter_id = $3"
)
#: Keys per :func:`select_chapters` statement.
KEYS_PER_SELECT = 200


def select_chapters(keys: int) -> str:
    """Rows of ``keys`` (novel, chapter) pairs: $1 scope, then $2/$3, $4/$5, ... per pair."""
    pairs = " OR ".join(
        f"(novel_id = ${2 + 2 * i} AND chapter_id = ${3 + 2 * i})" for i in range(keys)
    )
    return f"SELECT {COLUMNS} FROM scribe_chapters WHERE scope = $1 AND ({pairs})"


SELECT_TOMBSTONE = "SELECT deleted_offset FROM scribe_novels WHERE scope = $1 AND novel_id = $2"

#: $1 scope $2 novel $3 chapter $4 version $5 deleted $6 indexed_version $7 model
#: $8 chunk_count $9 flow_run_id $10 deleted_offset $11 now $12 source_offset
RECORD_APPLIED = (
    "INSERT INTO scribe_chapters (scope, novel_id, chapter_id, version, deleted,"
    " indexed_version, model, chunk_count, flow_run_id, latest_version, failed_version, error,"
    " deleted_offset, created_at, updated_at, source_offset) "
    + "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $4, NULL, NULL, $10, $11, $11, $12)"
    + _CONFLICT
    + "version = excluded.version, deleted = excluded.deleted,"
    " deleted_offset = excluded.deleted_offset, source_offset = excluded.source_offset,"
    " indexed_version = excluded.indexed_version, model = excluded.model,"
    " chunk_count = excluded.chunk_count,"
    f" flow_run_id = COALESCE(excluded.flow_run_id, {_OLD}flow_run_id),"
    f" latest_version = GREATEST({_OLD}latest_version, excluded.version),"
    f" failed_version = CASE WHEN {_OLD}failed_version > excluded.version"
    f" THEN {_OLD}failed_version END,"
    f" error = CASE WHEN {_OLD}failed_version > excluded.version THEN {_OLD}error END,"
    " updated_at = excluded.updated_at"
    # Compare-and-set on the version: a stray or late writer never moves a chapter back,
    # and at equal versions a delete is never undone by an embedding.
    f" WHERE excluded.version > {_OLD}version OR (excluded.version = {_OLD}version"
    f" AND (excluded.deleted OR NOT {_OLD}deleted))"
)

#: $1 scope $2 novel $3 chapter $4 version $5 flow_run_id $6 now
RECORD_SUBMITTED = (
    _INSERT
    + "VALUES ($1, $2, $3, 0, FALSE, NULL, NULL, 0, $5, $4, NULL, NULL, $6, $6)"
    + _CONFLICT
    + f"flow_run_id = CASE WHEN excluded.latest_version >= {_OLD}latest_version"
    f" THEN excluded.flow_run_id ELSE {_OLD}flow_run_id END,"
    f" latest_version = GREATEST({_OLD}latest_version, excluded.latest_version),"
    " updated_at = excluded.updated_at"
)

#: $1 scope $2 novel $3 chapter $4 version $5 flow_run_id $6 error $7 now
RECORD_FAILED = (
    _INSERT
    + "VALUES ($1, $2, $3, 0, FALSE, NULL, NULL, 0, $5, $4, $4, $6, $7, $7)"
    + _CONFLICT
    + f"failed_version = GREATEST(COALESCE({_OLD}failed_version, 0), excluded.failed_version),"
    " error = excluded.error, flow_run_id = excluded.flow_run_id,"
    f" latest_version = GREATEST({_OLD}latest_version, excluded.latest_version),"
    " updated_at = excluded.updated_at"
)

SELECT_NOVEL_CHAPTERS = f"SELECT {COLUMNS} FROM scribe_chapters WHERE scope = $1 AND novel_id = $2"
#: $1 scope $2 novel $3 the deletion's offset: rows of events logged after it stay.
DELETE_NOVEL_CHAPTERS = (
    "DELETE FROM scribe_chapters WHERE scope = $1 AND novel_id = $2"
    " AND (source_offset IS NULL OR source_offset <= $3)"
)

#: $1 scope: everything a scope holds, table by table (``Ledger.drop_scope``).
DROP_SCOPE = [
    "DELETE FROM scribe_chapters WHERE scope = $1",
    "DELETE FROM scribe_novels WHERE scope = $1",
    "DELETE FROM scribe_removals WHERE scope = $1",
]

#: $1 scope $2 event id $3 now
RECORD_REMOVAL = (
    "INSERT INTO scribe_removals (scope, event_id, applied_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (scope, event_id) DO NOTHING"
)


def select_removals(ids: int) -> str:
    """Which of ``ids`` event ids ($2...) were applied as removals in scope $1."""
    args = ", ".join(f"${i + 2}" for i in range(ids))
    return f"SELECT event_id FROM scribe_removals WHERE scope = $1 AND event_id IN ({args})"


#: $1 scope $2 novel $3 offset $4 now
UPSERT_TOMBSTONE = (
    "INSERT INTO scribe_novels (scope, novel_id, deleted_offset, updated_at)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (scope, novel_id) DO UPDATE SET"
    " deleted_offset = GREATEST(scribe_novels.deleted_offset, excluded.deleted_offset),"
    " updated_at = excluded.updated_at"
)
COUNTS = f"SELECT {STATUS} AS status, count(*) FROM scribe_chapters WHERE scope = $1 GROUP BY 1"
#: $1 scope $2 status $3 limit
LIST_BY_STATUS = (
    f"SELECT {COLUMNS} FROM scribe_chapters WHERE scope = $1 AND ({STATUS}) = $2"
    " ORDER BY updated_at DESC LIMIT $3"
)

#: $1 scope: the chunk rows the index should hold (chapters not deleted).
INDEXED_ROWS = (
    "SELECT COALESCE(SUM(chunk_count), 0) FROM scribe_chapters WHERE scope = $1 AND NOT deleted"
)
#: $1 scope $2 cutoff: pending chapters last updated before the cutoff.
STALE_PENDING = (
    f"SELECT count(*) FROM scribe_chapters WHERE scope = $1 AND ({STATUS}) = 'pending'"
    " AND updated_at < $2"
)
#: $1 scope: the pending chapter waiting longest.
OLDEST_PENDING = (
    f"SELECT {COLUMNS} FROM scribe_chapters WHERE scope = $1 AND ({STATUS}) = 'pending'"
    " ORDER BY updated_at ASC LIMIT 1"
)


def for_sqlite(sql: str) -> str:
    """PostgreSQL dialect to SQLite: numbered ``?N`` parameters, scalar ``max``."""
    return re.sub(r"\$(\d+)", r"?\1", sql.replace("GREATEST(", "max("))


def applied_args(scope: str, state: ChapterState, now: datetime) -> tuple[Any, ...]:
    """Parameters $1-$12 of :data:`RECORD_APPLIED` for ``state``."""
    return (
        scope,
        state.novel_id,
        state.chapter_id,
        state.version,
        state.deleted,
        state.indexed_version,
        state.model,
        state.chunk_count,
        state.flow_run_id,
        state.deleted_offset if state.deleted else None,
        state.updated_at or now,
        state.source_offset,
    )


def row_to_state(row: Any) -> ChapterState:
    """A selected row (``COLUMNS`` order) as a :class:`ChapterState`."""
    updated = row[8]
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated)
    return ChapterState(
        novel_id=row[0],
        chapter_id=row[1],
        version=int(row[2]),
        deleted=bool(row[3]),
        indexed_version=row[4],
        model=row[5],
        chunk_count=int(row[6]),
        flow_run_id=row[7],
        updated_at=updated,
        latest_version=int(row[9]),
        failed_version=row[10],
        error=row[11],
        source_offset=None if row[12] is None else int(row[12]),
        deleted_offset=None if row[13] is None else int(row[13]),
    )


EMPTY_COUNTS = {"pending": 0, "indexed": 0, "deleted": 0, "failed": 0}
