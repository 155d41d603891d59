"""``scribe replay`` and ``scribe index`` beside the running workers (runs last: it rebuilds)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from schemas import parse_result
from streams.adapters.kafka.client import partitions_of
from streams.adapters.milvus.store import MilvusVectorStore
from tests.integration.harness import Stack, converged, event, not_pending, wait_for

pytestmark = pytest.mark.integration


def _count(stack: Stack) -> int:
    async def run() -> int:
        store = stack.store()
        try:
            return await store.count()
        finally:
            await store.close()

    return asyncio.run(run())


def _collections(stack: Stack) -> dict[str, Any]:
    async def run() -> list[dict[str, Any]]:
        store = stack.store()
        try:
            return await store.collections()
        finally:
            await store.close()

    return {c["name"]: c for c in asyncio.run(run())}


def _rows(stack: Stack, collection: str) -> dict[str, int]:
    """id -> chapter_version of every row of a physical collection."""

    async def run() -> list[dict[str, Any]]:
        store = MilvusVectorStore(stack.settings.milvus_url, collection)
        try:
            return await store.query_rows("chunk_no >= 0", ["id", "chapter_version"])
        finally:
            await store.close()

    return {r["id"]: int(r["chapter_version"]) for r in asyncio.run(run())}


def _replay(stack: Stack, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = stack.scribe("replay", *args, timeout=1200, env_extra=env)
    assert out.returncode == 0, out.stderr[-3000:]
    # A command's own lines and progress, not one per Kafka group event (rough edge).
    assert " INFO aiokafka" not in out.stderr, out.stderr[-3000:]
    return dict(json.loads(out.stdout))


def _ledger_rows(stack: Stack, novel: str) -> list[Any]:
    """The live ledger's rows of the novel's chapters."""
    from streams.wiring import open_live_ledger

    async def rows() -> list[Any]:
        ledger = await open_live_ledger(stack.settings)
        try:
            return list(await ledger.chapters_of_novel(novel))
        finally:
            await ledger.close()

    return asyncio.run(rows())


def _runs(stack: Stack, tag: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 200}
    return list(stack.prefect("/flow_runs/filter", body))


def test_resink_twice_rebuilds_the_same_index_and_switches_the_alias(stack: Stack) -> None:
    novel = f"resink-{uuid.uuid4().hex[:6]}"
    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.created", novel, "c1", 1, title="t", text="一句。二句。"),
                ),
                (
                    novel.encode(),
                    event("chapter.created", novel, "c2", 1, title="t", text="三句。"),
                ),
                (novel.encode(), event("chapter.deleted", novel, "c2", 2)),
            ]
        )
    )
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "the novel indexed", stack)
    before = _count(stack)
    runs_before = len(stack.prefect("/flow_runs/filter", {"limit": 200}))
    alias = stack.settings.milvus_collection

    first = _replay(stack, "--resink")
    assert first["collection"] and first["previous_collection"]
    assert first["results_sent"] > 0  # fed to the worker, the one writer
    collections = _collections(stack)
    assert alias in collections[first["collection"]]["aliases"]
    assert _count(stack) == before
    assert converged(stack, novel, {"c1": (1, 1)})

    # A resink loads no model: one that cannot be loaded does not matter.
    no_model = {"SCRIBE_EMBEDDER": "sentence-transformers", "SCRIBE_EMBEDDER_MODEL": "/absent"}
    second = _replay(stack, "--resink", env=no_model)
    assert second["previous_collection"] == first["collection"]
    assert _count(stack) == before
    assert len(stack.prefect("/flow_runs/filter", {"limit": 200})) == runs_before  # no runs

    for old in (first["previous_collection"], first["collection"]):
        dropped = stack.scribe("index", "drop", old)
        assert dropped.returncode == 0, dropped.stderr
    in_use = stack.scribe("index", "drop", second["collection"])
    assert in_use.returncode != 0  # the alias points at it
    assert set(_collections(stack)) == {second["collection"]}


def _results_of(stack: Stack, novel: str) -> tuple[dict[str | None, int], dict[int, int]]:
    """The novel's results on the results topic, counted by the collection they address,
    and the topic's end offsets (partition -> offset) when read."""
    topic = stack.settings.topic_embeddings

    async def run() -> tuple[dict[str | None, int], dict[int, int]]:
        consumer = AIOKafkaConsumer(**stack.kafka.client_config(), enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in await partitions_of(stack.kafka, topic)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            counts: dict[str | None, int] = {}

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in parts])

            while await behind():
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    for m in msgs:
                        if m.key == novel.encode():
                            target = parse_result(m.value).target.collection
                            counts[target] = counts.get(target, 0) + 1
            return counts, {tp.partition: ends[tp] for tp in parts}
        finally:
            await consumer.stop()

    return asyncio.run(run())


async def _delete_results_before(stack: Stack, ends: dict[int, int]) -> None:
    admin = AIOKafkaAdminClient(**stack.kafka.client_config())
    await admin.start()
    try:
        topic = stack.settings.topic_embeddings
        await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(o) for p, o in ends.items() if o > 0}
        )
    finally:
        await admin.close()


def test_every_full_resink_sends_each_result_once_and_needs_no_original(stack: Stack) -> None:
    """Defect 10: each full resink re-sent the live results *and* the previous rebuild's
    copies of them, so the k-th resink sent every result k times and the topic grew
    quadratically. A copy carries where it was copied from, and is left out when this
    replay re-sends that original itself; once retention took the originals, the copies
    alone rebuild the index."""
    novel = f"resink-once-{uuid.uuid4().hex[:6]}"
    key = novel.encode()
    asyncio.run(
        stack.produce(
            [
                (key, event("chapter.created", novel, "c1", 1, title="t", text="一句。二句。")),
                (key, event("chapter.updated", novel, "c1", 2, title="t", text="一句。三句。")),
                (key, event("chapter.created", novel, "c2", 1, title="t", text="四句。")),
                (key, event("chapter.deleted", novel, "c2", 2)),
            ]
        )
    )
    expected = {"c1": (2, 1)}
    wait_for(lambda: converged(stack, novel, expected), 300, "the novel indexed", stack)
    # Four results: both versions of c1, c2 and its removal (each run publishes one).
    originals = 4
    wait_for(lambda: _results_of(stack, novel)[0] == {None: originals}, 120, "results", stack)

    first = _replay(stack, "--resink")
    _, before_second = _results_of(stack, novel)
    second = _replay(stack, "--resink")
    counts, _ = _results_of(stack, novel)
    assert counts.get(first["collection"]) == originals, counts
    assert counts.get(second["collection"]) == originals, counts  # not the copies again
    assert converged(stack, novel, expected)

    # Retention takes everything before the second rebuild's copies were sent: the
    # originals and the first copies. The third rebuild has only the second's copies.
    asyncio.run(_delete_results_before(stack, before_second))
    third = _replay(stack, "--resink")
    counts, _ = _results_of(stack, novel)
    assert counts.get(third["collection"]) == originals, counts
    assert converged(stack, novel, expected)


def test_reembed_one_novel_in_place_runs_new_flows_and_keeps_the_rows(stack: Stack) -> None:
    novel = f"reembed-{uuid.uuid4().hex[:6]}"
    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.created", novel, f"c{i}", 1, title="t", text=f"{i}句。"),
                )
                for i in range(3)
            ]
        )
    )
    expected = {f"c{i}": (1, 1) for i in range(3)}
    wait_for(lambda: converged(stack, novel, expected), 300, "the novel indexed", stack)
    summary = _replay(stack, "--reembed", "--novel", novel)
    # Issue 22: a replay's chapters go in batch runs (one partition, up to 50 chapters).
    assert summary["scope"] == "in place" and summary["runs_submitted"] == 1
    assert summary["chapters_submitted"] == 3 and summary["skipped_other_novels"] > 0

    def batch_done() -> list[dict[str, Any]]:
        runs = _runs(stack, f"novel:{novel}")
        done = [r for r in runs if r["state_type"] == "COMPLETED"]
        return [r for r in done if "batch" in r["tags"]] if len(done) == 4 else []

    [batch] = wait_for(batch_done, 300, "the live runs and one batch run completed", stack)
    assert batch["name"].endswith(f"(3 chapters: {novel}/c0@v1 .. {novel}/c2@v1)"), batch
    assert [e["chapter_id"] for e in batch["parameters"]["batch"]] == []  # none left in it
    assert converged(stack, novel, expected)
    assert all(r.flow_run_id == batch["id"] for r in _ledger_rows(stack, novel))


def test_a_reembed_runs_only_the_newest_live_version_of_each_chapter(stack: Stack) -> None:
    """Issue 22: a re-embed redid history, one flow run per version it read (a chapter
    revised fifty times, fifty runs). It now reads its range first and runs each chapter's
    newest live write only: here 4 runs for 9 writes, and the summary counts the 5 it
    skipped (4 older versions, 1 deleted chapter)."""
    novel = f"live-{uuid.uuid4().hex[:6]}"
    key = novel.encode()
    writes = [
        (key, event("chapter.created", novel, f"c{i}", 1, title="t", text=f"{i}句。"))
        for i in range(4)
    ]
    writes += [
        (key, event("chapter.updated", novel, "c0", v, title="t", text=f"第{v}稿。"))
        for v in range(2, 6)
    ]
    writes += [
        (key, event("chapter.created", novel, "c4", 1, title="t", text="删。")),
        (key, event("chapter.deleted", novel, "c4", 1)),
    ]
    asyncio.run(stack.produce(writes))
    expected = {"c0": (5, 1), **{f"c{i}": (1, 1) for i in range(1, 4)}}
    wait_for(lambda: converged(stack, novel, expected), 300, "the novel indexed", stack)

    def unfinished() -> list[dict[str, Any]]:
        return [r for r in _runs(stack, f"novel:{novel}") if r["state_type"] != "COMPLETED"]

    # Nine writes, nine live runs (c4's may be submitted after the index converged: the
    # index never shows c4, created and deleted).
    live_runs = 9
    wait_for(
        lambda: len(_runs(stack, f"novel:{novel}")) == live_runs and not unfinished(),
        300,
        "the live runs done",
        stack,
    )
    # One run per chapter here (SCRIBE_REPLAY_BATCH_CHAPTERS=1), as live traffic runs them.
    summary = _replay(
        stack, "--reembed", "--novel", novel, env={"SCRIBE_REPLAY_BATCH_CHAPTERS": "1"}
    )
    assert summary["runs_submitted"] == 4 == summary["chapters_submitted"], summary
    assert summary["versions_skipped"] == 5, summary
    wait_for(
        lambda: len(_runs(stack, f"novel:{novel}")) == live_runs + 4 and not unfinished(),
        300,
        "the four replay runs done",
        stack,
    )
    assert converged(stack, novel, expected)


def test_a_write_re_sent_after_its_novels_deletion_leaves_nothing_pending(
    stack: Stack,
) -> None:
    """A chapter write delivered again after its novel's deletion (the platform re-sending,
    or a redrive: either stands before the deletion) was submitted again and recorded as
    pending after the deletion had dropped the novel's rows; no result ever cleared it,
    and a full rebuild meeting it waited for it forever. Now the chapter agent leaves out
    a write that stands before its novel's applied deletion. The full re-embed below
    replays this novel's history too."""

    novel = f"resent-{uuid.uuid4().hex[:6]}"
    key = novel.encode()
    write = event("chapter.created", novel, "c1", 1, title="t", text="一句。")
    asyncio.run(stack.produce([(key, write)]))
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "the novel indexed", stack)
    asyncio.run(stack.produce([(key, event("novel.deleted", novel, None, 2))]))
    wait_for(lambda: converged(stack, novel, {}) is not None, 120, "the novel deleted", stack)
    asyncio.run(stack.produce([(key, write)]))  # the same event again, after the deletion
    # The novel written again, behind the re-sent write: once indexed, that one was handled.
    later = event("chapter.created", novel, "c2", 1, title="t", text="二句。")
    asyncio.run(stack.produce([(key, later)]))
    wait_for(lambda: converged(stack, novel, {"c2": (1, 1)}), 300, "the new chapter", stack)

    assert not_pending(stack, novel, "c1")
    assert converged(stack, novel, {"c2": (1, 1)})


def test_full_reembed_builds_a_new_collection_while_search_keeps_working(stack: Stack) -> None:
    before = _count(stack)
    alias_before = next(
        n
        for n, c in _collections(stack).items()
        if stack.settings.milvus_collection in c["aliases"]
    )
    summary = _replay(stack, "--reembed")
    assert summary["scope"] == "full rebuild"
    assert summary["previous_collection"] == alias_before
    assert summary["runs_submitted"] > 0
    collections = _collections(stack)
    assert stack.settings.milvus_collection in collections[summary["collection"]]["aliases"]
    old, new = _rows(stack, alias_before), _rows(stack, summary["collection"])
    assert len(old) == before
    assert old.items() <= new.items()  # every live row again, at the same version
    # Only chapters whose processing had failed in the live index may gain rows.
    failed = {
        (f["novel_id"], f["chapter_id"])
        for f in json.loads(stack.scribe("status", "--json").stdout)["ledger"]["failed"]
    }
    assert {tuple(i.split(":")[:2]) for i in new.keys() - old.keys()} <= failed
    found = stack.scribe("search", "花果山 水帘洞", "-k", "1", "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["hits"]


def test_a_full_reembed_rebuilds_for_a_model_of_another_dimension(stack: Stack) -> None:
    """After a model change to another vector size, the documented rebuild (``scribe
    replay --reembed``) refused: it checked the live collection's size against the new
    model and told the user to run the very command that failed. A full rebuild now
    builds the new collection at the new size and switches; in place it still refuses."""
    from aiokafka.admin import NewTopic

    alias = f"dim_{uuid.uuid4().hex[:6]}"
    old = f"{alias}__old"
    topic = f"dim-events-{uuid.uuid4().hex[:6]}"

    async def setup() -> None:
        store = MilvusVectorStore(stack.settings.milvus_url, alias)
        admin = AIOKafkaAdminClient(**stack.kafka.client_config())
        await admin.start()
        try:
            await store.create_collection(old, 8)  # an older, 8-d model's index
            await store.point_alias(old)
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await store.close()
            await admin.close()

    asyncio.run(setup())
    env = {"SCRIBE_MILVUS_COLLECTION": alias, "SCRIBE_TOPIC_EVENTS": topic}
    in_place = stack.scribe("replay", "--reembed", "--novel", "x", env_extra=env, timeout=600)
    assert in_place.returncode == 1 and "8-d" in in_place.stderr, in_place.stderr[-2000:]
    summary = _replay(stack, "--reembed", env=env)
    assert summary["previous_collection"] == old
    shapes = _collections(stack)
    assert alias in shapes[summary["collection"]]["aliases"]

    async def dimension() -> int:
        store = MilvusVectorStore(stack.settings.milvus_url, alias)
        try:
            return (await store.shape())[2]
        finally:
            await store.close()

    assert asyncio.run(dimension()) == 384


def _search(stack: Stack, query: str, novel: str, mode: str) -> list[dict[str, Any]]:
    found = stack.scribe("search", query, "--novel", novel, "--mode", mode, "--json")
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    assert body["searched"] == mode, body
    return list(body["hits"])


def test_search_after_an_edit_a_delete_and_a_rebuild_shows_only_the_newest_version(
    stack: Stack,
) -> None:
    """Issue 21: the BM25 field is written with the row, in the same upsert, and a
    rebuild (a full resink) writes it again: no search mode ever shows a passage of an
    older version or of a deleted chapter, before or after the rebuild."""
    novel = f"search-{uuid.uuid4().hex[:6]}"
    key = novel.encode()
    old = "老渔夫在青石滩捡到一面铜镜，镜背刻着北斗。"
    new = "老渔夫在白沙湾捡到一把铁剑，剑身刻着南斗。"
    gone = "书生在紫竹林遇见一只白狐，白狐教他写诗。"
    asyncio.run(
        stack.produce(
            [
                (key, event("chapter.created", novel, "c1", 1, title="渔夫", text=old)),
                (key, event("chapter.created", novel, "c2", 1, title="书生", text=gone)),
                (key, event("chapter.updated", novel, "c1", 2, title="渔夫", text=new)),
                (key, event("chapter.deleted", novel, "c2", 2)),
            ]
        )
    )
    wait_for(lambda: converged(stack, novel, {"c1": (2, 1)}), 300, "the edit and delete", stack)

    def check() -> None:
        for mode in ("hybrid", "bm25", "dense"):
            for query in ("青石滩 铜镜 北斗", "紫竹林 白狐", "白沙湾 铁剑"):
                for hit in _search(stack, query, novel, mode):
                    assert (hit["chapter_id"], hit["chapter_version"]) == ("c1", 2), hit
                    for passage in hit["passages"]:
                        assert passage["text"] == new, (mode, query, passage)
        assert _search(stack, "青石滩 铜镜", novel, "bm25") == [], "no old term is left"
        assert _search(stack, "紫竹林 白狐", novel, "bm25") == [], "nor the deleted chapter's"
        top = _search(stack, "白沙湾 铁剑", novel, "hybrid")[0]
        marked = {top["passages"][0]["text"][s:e] for s, e in top["passages"][0]["highlights"]}
        assert {"白沙湾", "铁剑"} <= marked, marked
        assert top["explain"]["source"]["topic"] == stack.settings.topic_events
        assert top["explain"]["flow_run_url"].startswith(stack.settings.prefect_ui_url)

    check()
    rebuilt = _replay(stack, "--resink")
    assert rebuilt["collection"] and rebuilt["previous_collection"]
    check()
