"""Contract every Ledger adapter must meet: run against memory, SQLite and PostgreSQL.

Each ``check_*`` coroutine takes a fresh, empty ledger. ``tests/unit/test_ledger.py`` runs
them on the in-memory and SQLite ledgers, ``tests/integration/test_ledger_postgres.py``
on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from agents.decisions import ChapterState
from agents.ledger import Ledger

WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EMPTY = {"pending": 0, "indexed": 0, "deleted": 0, "failed": 0}


def applied(
    novel: str,
    chapter: str,
    version: int,
    deleted: bool = False,
    run: str | None = None,
    chunks: int = 2,
) -> ChapterState:
    """A row as the result agent records it."""
    return ChapterState(
        novel,
        chapter,
        version,
        deleted,
        indexed_version=None if deleted else version,
        model=None if deleted else "m",
        chunk_count=0 if deleted else chunks,
        flow_run_id=run,
        updated_at=WHEN,
    )


async def check_starts_empty(ledger: Ledger) -> None:
    assert await ledger.chapter("n", "c") is None
    assert await ledger.novel_deleted_offset("n") is None
    assert await ledger.counts() == EMPTY
    assert await ledger.chapters("indexed") == []


async def check_applied_rows_round_trip_and_replace(ledger: Ledger) -> None:
    await ledger.record_applied(applied("n", "c", 1, run="r1"))
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.version, row.deleted, row.indexed_version, row.model, row.chunk_count) == (
        1,
        False,
        1,
        "m",
        2,
    )
    assert (row.flow_run_id, row.latest_version, row.status) == ("r1", 1, "indexed")
    await ledger.record_applied(applied("n", "c", 2, deleted=True))
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.version, row.deleted, row.indexed_version, row.chunk_count) == (2, True, None, 0)
    assert row.deleted_version == 2
    assert row.flow_run_id == "r1"  # kept when the new effect has no run
    assert row.status == "deleted"
    assert await ledger.chapter("n", "other") is None
    assert await ledger.counts() == {**EMPTY, "deleted": 1}


async def check_submitted_is_pending_until_applied(ledger: Ledger) -> None:
    await ledger.record_applied(applied("n", "c", 1, run="r1"))
    await ledger.record_submitted("n", "c", 3, "r3")
    await ledger.record_submitted("n", "c", 2, "r2")  # an older submission arrives late
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.version, row.latest_version, row.flow_run_id, row.status) == (1, 3, "r3", "pending")
    await ledger.record_submitted("n", "new", 1, "rn")
    fresh = await ledger.chapter("n", "new")
    assert fresh is not None and fresh.status == "pending" and fresh.version == 0
    assert await ledger.counts() == {**EMPTY, "pending": 2}
    await ledger.record_applied(applied("n", "c", 3, run="r3"))
    row = await ledger.chapter("n", "c")
    assert row is not None and (row.status, row.latest_version) == ("indexed", 3)
    assert [r.chapter_id for r in await ledger.chapters("pending")] == ["new"]


async def check_failure_is_shown_until_a_newer_version_applies(ledger: Ledger) -> None:
    await ledger.record_applied(applied("n", "c", 1))
    await ledger.record_submitted("n", "c", 2, "r2")
    await ledger.record_failed("n", "c", 2, "r2", "Failed: boom")
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.status, row.failed_version, row.error, row.version) == (
        "failed",
        2,
        "Failed: boom",
        1,
    )
    assert await ledger.counts() == {**EMPTY, "failed": 1}
    assert [r.error for r in await ledger.chapters("failed")] == ["Failed: boom"]
    await ledger.record_submitted("n", "c", 3, "r3")  # a newer version is on its way
    row = await ledger.chapter("n", "c")
    assert row is not None and row.status == "pending"
    await ledger.record_applied(applied("n", "c", 3, run="r3"))
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.status, row.failed_version, row.error) == ("indexed", None, None)


async def check_an_older_failure_does_not_mark_a_newer_index_failed(ledger: Ledger) -> None:
    await ledger.record_applied(applied("n", "c", 3))
    await ledger.record_failed("n", "c", 2, "r2", "late failure of v2")
    row = await ledger.chapter("n", "c")
    assert row is not None and row.status == "indexed"


async def check_novel_deletion_drops_rows_and_keeps_highest_tombstone(ledger: Ledger) -> None:
    await ledger.record_applied(applied("n", "a", 1))
    await ledger.record_applied(applied("n", "b", 2, deleted=True))
    await ledger.record_applied(applied("m", "a", 1))
    await ledger.delete_novel("n", 10)
    assert await ledger.chapter("n", "a") is None
    assert await ledger.chapter("n", "b") is None
    other = await ledger.chapter("m", "a")
    assert other is not None and other.version == 1
    assert await ledger.novel_deleted_offset("n") == 10
    assert await ledger.novel_deleted_offset("m") is None
    await ledger.delete_novel("n", 4)
    assert await ledger.novel_deleted_offset("n") == 10
    await ledger.delete_novel("n", 12)
    assert await ledger.novel_deleted_offset("n") == 12
    assert await ledger.counts() == {**EMPTY, "indexed": 1}


async def check_a_novel_deletion_keeps_rows_logged_after_it(ledger: Ledger) -> None:
    """Issue 19, hole 5: rows carry their source offset; a novel deletion at offset 10
    drops rows of events logged before it (or of unknown position) and keeps later ones."""
    from dataclasses import replace

    await ledger.record_applied(replace(applied("n", "old", 1), source_offset=4))
    await ledger.record_applied(replace(applied("n", "again", 1), source_offset=12))
    await ledger.record_applied(replace(applied("n", "gone", 2, deleted=True), source_offset=15))
    await ledger.record_applied(applied("n", "unknown", 1))
    await ledger.record_submitted("n", "pending", 1, "r1")
    rows = {c.chapter_id: c.source_offset for c in await ledger.chapters_of_novel("n")}
    assert rows == {"old": 4, "again": 12, "gone": 15, "unknown": None, "pending": None}
    await ledger.delete_novel("n", 10)
    kept = {c.chapter_id for c in await ledger.chapters_of_novel("n")}
    assert kept == {"again", "gone"}
    assert await ledger.novel_deleted_offset("n") == 10
    row = await ledger.chapter("n", "again")
    assert row is not None and row.status == "indexed" and row.source_offset == 12
    await ledger.delete_novel("n", 20)
    assert await ledger.chapters_of_novel("n") == []


async def check_many_applied_rows_land_in_order(ledger: Ledger) -> None:
    await ledger.record_failed("n", "b", 5, "r5", "v5 failed")
    await ledger.record_applied_many(
        [applied("n", "a", 1, run="r1"), applied("n", "b", 3), applied("n", "a", 2, chunks=7)]
    )
    a, b = await ledger.chapter("n", "a"), await ledger.chapter("n", "b")
    assert a is not None and (a.version, a.chunk_count, a.flow_run_id) == (2, 7, "r1")
    assert b is not None and (b.version, b.failed_version, b.status) == (3, 5, "failed")
    await ledger.record_applied_many([])
    assert await ledger.counts() == {**EMPTY, "indexed": 1, "failed": 1}


async def check_rows_by_key_in_one_call(ledger: Ledger) -> None:
    assert await ledger.chapters_by_key([]) == {}
    await ledger.record_applied_many([applied("n", f"c{i}", 1) for i in range(250)])
    await ledger.record_submitted("m", "x", 4, "r4")
    keys = [("n", f"c{i}") for i in range(0, 250, 2)] + [("m", "x"), ("n", "none"), ("n", "c0")]
    found = await ledger.chapters_by_key(keys)  # more keys than one statement takes
    assert set(found) == {("n", f"c{i}") for i in range(0, 250, 2)} | {("m", "x")}
    for key, state in found.items():
        assert state == await ledger.chapter(*key)


async def check_a_stray_writer_never_moves_a_chapter_back(ledger: Ledger) -> None:
    """Every applied write is a compare-and-set on the version (one writer or not)."""
    await ledger.record_applied(applied("n", "c", 3, run="r3", chunks=5))
    await ledger.record_applied(applied("n", "c", 2, run="r2", chunks=9))  # late, older
    row = await ledger.chapter("n", "c")
    assert row is not None
    assert (row.version, row.chunk_count, row.flow_run_id) == (3, 5, "r3")
    await ledger.record_applied(applied("n", "c", 3, deleted=True))
    await ledger.record_applied(applied("n", "c", 3, run="again"))  # same version, embedded
    row = await ledger.chapter("n", "c")
    assert row is not None and (row.version, row.deleted) == (3, True)
    await ledger.record_applied_many([applied("n", "c", 4, chunks=1), applied("n", "c", 1)])
    row = await ledger.chapter("n", "c")
    assert row is not None and (row.version, row.deleted, row.chunk_count) == (4, False, 1)
    await ledger.record_applied(applied("n", "c", 4, chunks=6))  # same version: re-applied
    row = await ledger.chapter("n", "c")
    assert row is not None and row.chunk_count == 6


async def check_applied_removals_are_remembered_by_event_id(ledger: Ledger) -> None:
    assert await ledger.removals_applied([]) == set()
    assert await ledger.removals_applied(["e1", "e2"]) == set()
    await ledger.record_removals(["e1", "e3"])
    await ledger.record_removals(["e1"])  # again: harmless
    many = [f"x{i}" for i in range(250)]  # more than one statement takes
    await ledger.record_removals(many)
    assert await ledger.removals_applied(["e1", "e2", "e3", "e1"]) == {"e1", "e3"}
    assert await ledger.removals_applied([*many, "nope"]) == set(many)
    await ledger.delete_novel("n", 5)  # a novel deletion keeps the record
    assert await ledger.removals_applied(["e3"]) == {"e3"}


async def check_summary_counts_rows_the_index_should_hold_and_old_pending(
    ledger: Ledger,
) -> None:
    """Rows: every chapter not deleted, pending and failed ones by their applied version."""
    now = datetime.now(UTC)
    empty = await ledger.summary(now)
    assert (empty.indexed_rows, empty.stale_pending, empty.oldest_pending) == (0, 0, None)
    await ledger.record_applied_many(
        [applied("n", "a", 1, chunks=3), applied("n", "b", 1, chunks=4), applied("n", "d", 1)]
    )
    await ledger.record_applied(applied("n", "d", 2, deleted=True))
    await ledger.record_submitted("n", "b", 2, "rb")  # pending: its v1 rows are still there
    await ledger.record_submitted("m", "x", 1, "rx")  # pending, nothing applied yet
    await ledger.record_applied(applied("n", "f", 1, chunks=5))
    await ledger.record_failed("n", "f", 2, "rf", "boom")  # failed: its v1 rows stay
    later = datetime.now(UTC) + timedelta(hours=1)
    summary = await ledger.summary(later)
    assert summary.indexed_rows == 3 + 4 + 5
    assert summary.stale_pending == 2
    assert summary.oldest_pending is not None
    assert (summary.oldest_pending.novel_id, summary.oldest_pending.chapter_id) == ("n", "b")
    assert summary.oldest_pending.latest_version == 2
    assert (await ledger.summary(now - timedelta(hours=1))).stale_pending == 0
    await ledger.delete_novel("n", 9)
    gone = await ledger.summary(later)
    assert (gone.indexed_rows, gone.stale_pending) == (0, 1)


async def check_dropping_the_scope_forgets_all_its_books(ledger: Ledger) -> None:
    """``scribe index drop``: a collection re-created under the same name starts empty."""
    await ledger.record_applied_many([applied("n", "a", 7), applied("n", "b", 2, deleted=True)])
    await ledger.record_submitted("n", "c", 3, "r3")
    await ledger.record_failed("n", "d", 4, "r4", "boom")
    await ledger.delete_novel("m", 11)
    await ledger.record_removals(["e1"])
    await ledger.drop_scope()
    await check_starts_empty(ledger)
    assert await ledger.chapters_by_key([("n", "a"), ("n", "c"), ("n", "d")]) == {}
    assert await ledger.removals_applied(["e1"]) == set()
    assert (await ledger.summary(datetime.now(UTC) + timedelta(hours=1))).indexed_rows == 0
    await ledger.drop_scope()  # again: harmless
    await ledger.record_applied(applied("n", "a", 1))  # the new collection's books
    row = await ledger.chapter("n", "a")
    assert row is not None and (row.version, row.status) == (1, "indexed")


async def check_a_deletion_keeps_its_log_position(ledger: Ledger) -> None:
    """The sink tells a re-creation logged after a chapter's deletion from history."""
    await ledger.record_applied(applied("n", "c", 5))
    row = await ledger.chapter("n", "c")
    assert row is not None and row.deleted_offset is None
    gone = replace(applied("n", "c", 6, deleted=True), deleted_offset=42)
    await ledger.record_applied_many([gone])
    row = await ledger.chapter("n", "c")
    assert row is not None and (row.deleted, row.deleted_offset) == (True, 42)
    assert (await ledger.chapters_by_key([("n", "c")]))[("n", "c")].deleted_offset == 42
    await ledger.record_applied(applied("n", "c", 7))  # re-created above: no deletion now
    row = await ledger.chapter("n", "c")
    assert row is not None and row.deleted_offset is None


CONTRACT: list[Callable[[Ledger], Awaitable[None]]] = [
    check_starts_empty,
    check_applied_rows_round_trip_and_replace,
    check_submitted_is_pending_until_applied,
    check_failure_is_shown_until_a_newer_version_applies,
    check_an_older_failure_does_not_mark_a_newer_index_failed,
    check_novel_deletion_drops_rows_and_keeps_highest_tombstone,
    check_a_novel_deletion_keeps_rows_logged_after_it,
    check_many_applied_rows_land_in_order,
    check_rows_by_key_in_one_call,
    check_a_stray_writer_never_moves_a_chapter_back,
    check_applied_removals_are_remembered_by_event_id,
    check_summary_counts_rows_the_index_should_hold_and_old_pending,
    check_dropping_the_scope_forgets_all_its_books,
    check_a_deletion_keeps_its_log_position,
]
