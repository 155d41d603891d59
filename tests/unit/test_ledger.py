"""The ledger contract on the in-memory and the SQLite ledgers (PostgreSQL: integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.ledger import Ledger
from streams.adapters.ledger.sqlite import SqliteLedger
from tests.fakes import InMemoryLedger
from tests.ledger_contract import CONTRACT, applied


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_ledger_contract(
    kind: str, check: Callable[[Ledger], Awaitable[None]], tmp_path: Path
) -> None:
    ledger: Ledger = InMemoryLedger() if kind == "memory" else SqliteLedger(tmp_path / "l.db")
    try:
        await check(ledger)
    finally:
        await ledger.close()


async def test_sqlite_ledger_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = SqliteLedger(path)
    await led.record_applied(applied("n", "a", 3))
    await led.record_applied(applied("x", "a", 1))
    await led.delete_novel("x", 42)
    await led.close()
    reopened = SqliteLedger(path)
    try:
        row = await reopened.chapter("n", "a")
        assert row is not None and row.version == 3 and row.status == "indexed"
        assert await reopened.chapter("x", "a") is None
        assert await reopened.novel_deleted_offset("x") == 42
    finally:
        await reopened.close()


async def test_scopes_keep_separate_books(tmp_path: Path) -> None:
    live = SqliteLedger(tmp_path / "l.db", scope="novel_chunks")
    rebuild = SqliteLedger(tmp_path / "l.db", scope="novel_chunks__new")
    try:
        await live.record_applied(applied("n", "a", 3))
        assert await rebuild.chapter("n", "a") is None
        assert (await live.counts())["indexed"] == 1
        assert (await rebuild.counts())["indexed"] == 0
    finally:
        await live.close()
        await rebuild.close()


async def test_dropping_a_scope_leaves_the_other_scopes_books(tmp_path: Path) -> None:
    live = SqliteLedger(tmp_path / "l.db", scope="novel_chunks")
    old = SqliteLedger(tmp_path / "l.db", scope="novel_chunks__old")
    try:
        for ledger in (live, old):
            await ledger.record_applied(applied("n", "a", 3))
            await ledger.delete_novel("m", 5)
            await ledger.record_removals(["e1"])
        await old.drop_scope()
        assert await old.chapter("n", "a") is None
        row = await live.chapter("n", "a")
        assert row is not None and row.version == 3
        assert await live.novel_deleted_offset("m") == 5
        assert await live.removals_applied(["e1"]) == {"e1"}
    finally:
        await live.close()
        await old.close()


async def test_a_ledger_file_of_an_older_release_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3
    from dataclasses import replace

    from streams.adapters.ledger import sql as q

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for ddl in q.DDL:
        old.execute(ddl.format(ts="TEXT").replace(" deleted_offset BIGINT,", ""))
    old.commit()
    old.close()
    ledger = SqliteLedger(path)
    try:
        await ledger.record_applied(replace(applied("n", "a", 2, deleted=True), deleted_offset=9))
        row = await ledger.chapter("n", "a")
        assert row is not None and row.deleted_offset == 9
    finally:
        await ledger.close()
    reopened = SqliteLedger(path)  # the column is there now: nothing to add
    await reopened.close()
