"""A novel deleted and written again around a rebuild's switch (issue 19, hole 5).

A full rebuild's last round replays what was logged until its switch into the new
collection, where live results of the switch already land. When that round holds a novel
deletion and the novel was written again just after the switch, the replayed deletion
used to delete the newer live rows too. Rows now carry their source offset in the ledger,
and a novel deletion removes only what was logged before it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from agents.decisions import ChapterState, outlives_novel_deletion
from agents.result_agent import ResultAgent
from schemas import Target
from streams.adapters.ledger.sqlite import SqliteLedger
from tests.fakes import InMemoryCatalog as Catalog
from tests.unit.test_agents import InMemoryDeadLetters, embedded, msg, novel_removed
from tests.unit.test_one_writer import FAST, retarget


def test_only_a_row_of_an_event_logged_after_the_deletion_outlives_it() -> None:
    def row(offset: int | None) -> ChapterState:
        return ChapterState("n1", "c1", 1, False, source_offset=offset)

    assert outlives_novel_deletion(row(11), 10)
    assert not outlives_novel_deletion(row(9), 10)
    assert not outlives_novel_deletion(row(None), 10)  # unknown position: logged before


def _chapters(catalog: Catalog, name: str) -> set[str]:
    return {r["chapter_id"] for r in catalog.store(name).rows.values()}


async def test_a_replayed_deletion_keeps_the_novel_written_again_after_the_switch() -> None:
    catalog = Catalog("old", "new")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    # The rebuild indexed c1 (logged at 5) into its collection; the novel's deletion was
    # logged at 10, after its last round before the switch.
    await sink.handle_batch([msg(retarget(embedded(1, 2, chapter="c1", offset=5), "new"))])
    catalog.alias = "new"  # the switch
    # The novel written again (logged at 12): a live result, it lands first.
    await sink.handle_batch([msg(embedded(1, 3, chapter="c2", offset=12))])
    # The rebuild's last round replays the deletion logged at 10.
    await sink.handle_batch([msg(novel_removed(10).model_copy(update={"target": Target("new")}))])
    assert _chapters(catalog, "new") == {"c2"}
    ledger = catalog.indexes["new"].ledger
    row = await ledger.chapter("n1", "c2")
    assert row is not None and row.status == "indexed" and row.chunk_count == 3
    assert await ledger.chapter("n1", "c1") is None
    assert await ledger.novel_deleted_offset("n1") == 10


async def test_in_one_batch_a_deletion_keeps_what_was_logged_after_it() -> None:
    catalog = Catalog("live")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    await sink.handle_batch(
        [
            msg(embedded(1, 2, chapter="c1", offset=5)),
            msg(embedded(1, 1, chapter="c2", offset=12)),
            msg(novel_removed(10)),
            msg(embedded(2, 2, chapter="c2", offset=14)),  # decided against c2 kept at v1
        ]
    )
    assert _chapters(catalog, "live") == {"c2"}
    row = await catalog.indexes["live"].ledger.chapter("n1", "c2")
    assert row is not None and (row.version, row.source_offset) == (2, 14)


async def test_a_deletion_without_later_writes_still_removes_the_whole_novel() -> None:
    catalog = Catalog("live")
    sink = ResultAgent(catalog=catalog, dead_letters=InMemoryDeadLetters(), backoff=FAST)
    await sink.handle_batch([msg(embedded(1, 2, chapter="c1", offset=5))])
    await sink.handle_batch([msg(embedded(1, 2, chapter="c2", offset=7))])
    await sink.handle_batch([msg(novel_removed(10))])
    assert _chapters(catalog, "live") == set()
    assert await catalog.indexes["live"].ledger.chapters_of_novel("n1") == []


async def test_a_sqlite_ledger_of_the_previous_release_gains_the_source_offset(
    tmp_path: Path,
) -> None:
    """Ledgers created before rows carried positions get the column when opened."""
    path = tmp_path / "ledger.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE scribe_chapters (scope TEXT NOT NULL, novel_id TEXT NOT NULL,"
        " chapter_id TEXT NOT NULL, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL,"
        " indexed_version BIGINT, model TEXT, chunk_count BIGINT NOT NULL, flow_run_id TEXT,"
        " latest_version BIGINT NOT NULL, failed_version BIGINT, error TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " PRIMARY KEY (scope, novel_id, chapter_id))"
    )
    old.execute(
        "INSERT INTO scribe_chapters VALUES ('novel_chunks', 'n1', 'c1', 1, 0, 1, 'm', 2,"
        " NULL, 1, NULL, NULL, '2026-12-01T00:00:00+00:00', '2026-12-01T00:00:00+00:00')"
    )
    old.commit()
    old.close()
    for _ in range(2):  # opening twice adds the column once
        ledger = SqliteLedger(path)
        row = await ledger.chapter("n1", "c1")
        assert row is not None and row.source_offset is None and row.status == "indexed"
        await ledger.close()
    ledger = SqliteLedger(path)
    await ledger.record_applied(replace(row, version=2, source_offset=9))
    again = await ledger.chapter("n1", "c1")
    assert again is not None and again.source_offset == 9
    await ledger.close()
