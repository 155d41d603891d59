"""The two gaps of a full rebuild's switch (issue 19, hole 5; RELIABILITY.md's "Open").

A novel deleted and written again around the switch keeps what was written after its
deletion; a chapter failing for good in the rebuild is parked with its target, run once
more, and the rebuild refuses to switch without it unless forced.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from schemas import ChapterEmbedded, NovelRemoved, SourceRef
from streams.adapters.milvus.store import MilvusVectorStore
from tests.integration.harness import Stack, converged, event, wait_for
from tests.integration.test_operations import _describe, _embedded, _results_drained

pytestmark = pytest.mark.integration


def _log(stack: Stack, novel: str, value: bytes) -> SourceRef:
    """Produce one input event; where it was logged."""

    async def run() -> SourceRef:
        producer = await stack.start_producer()
        try:
            sent = await producer.send_and_wait(
                stack.settings.topic_events, value, key=novel.encode()
            )
        finally:
            await producer.stop()
        return SourceRef(topic=sent.topic, partition=sent.partition, offset=sent.offset)

    return asyncio.run(run())


def _publish(stack: Stack, novel: str, result: ChapterEmbedded | NovelRemoved) -> None:
    """A result as the rebuild publishes it (to the worker, the one writer)."""

    async def run() -> None:
        producer = await stack.start_producer()
        try:
            await producer.send_and_wait(
                stack.settings.topic_embeddings,
                result.model_dump_json().encode(),
                key=novel.encode(),
            )
        finally:
            await producer.stop()

    asyncio.run(run())


def _chapters_in(stack: Stack, collection: str, novel: str) -> set[str]:
    async def run() -> set[str]:
        store = MilvusVectorStore(stack.settings.milvus_url, collection)
        try:
            rows = await store.query_rows(f'novel_id == "{novel}"', ["chapter_id"])
        finally:
            await store.close()
        return {r["chapter_id"] for r in rows}

    return asyncio.run(run())


def test_a_deletion_replayed_after_the_switch_keeps_the_novel_written_again(
    stack: Stack,
) -> None:
    """Hole 5 (RELIABILITY.md, Open): a full rebuild's last round replays what was logged
    until its switch into the new collection, where live results already land. A novel
    deleted before the switch and written again just after it lost its new chapter there
    when the replayed deletion came (before the fix: the new collection held nothing of
    the novel, for good). Rows carry their source offset in the ledger now, and a novel
    deletion removes only what was logged before it."""
    novel = f"again-{uuid.uuid4().hex[:6]}"
    first = _log(stack, novel, event("chapter.created", novel, "c1", 1, title="t", text="一句。"))
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "c1 indexed live", stack)
    live = _describe(stack)
    admin = MilvusVectorStore(stack.settings.milvus_url, stack.settings.milvus_collection)
    rebuilt = f"{live['collection']}__again{uuid.uuid4().hex[:6]}"
    asyncio.run(admin.create_collection(rebuilt, 384))
    try:
        # The rebuild's rounds before the switch indexed c1 into its collection.
        done = _embedded(novel, "c1", 1, 1, live["model"], 384, target=rebuilt, source=first)
        _publish(stack, novel, done)
        wait_for(lambda: _chapters_in(stack, rebuilt, novel) == {"c1"}, 120, "c1 rebuilt", stack)
        # The novel's deletion is logged after the rebuild's last round; live applies it.
        deletion = event("novel.deleted", novel, None, 2)
        deleted_at = _log(stack, novel, deletion)
        wait_for(lambda: converged(stack, novel, {}) is not None, 120, "deleted live", stack)
        asyncio.run(admin.point_alias(rebuilt))  # the switch
        # The novel written again just after the switch: live, into the new collection.
        _log(stack, novel, event("chapter.created", novel, "c2", 1, title="t", text="二句。"))
        wait_for(lambda: "c2" in _chapters_in(stack, rebuilt, novel), 300, "c2 live", stack)
        # The rebuild's last round replays the deletion (same event, same position).
        replayed = NovelRemoved(
            event_id=uuid.UUID(json.loads(deletion)["event_id"]),
            novel_id=novel,
            version=2,
            target=rebuilt,
            source=deleted_at,
        )
        _publish(stack, novel, replayed)
        wait_for(lambda: _results_drained(stack), 120, "the worker applied it", stack, interval=2)
        assert _chapters_in(stack, rebuilt, novel) == {"c2"}
        assert converged(stack, novel, {"c2": (1, 1)})
    finally:
        asyncio.run(admin.point_alias(live["collection"]))
        asyncio.run(admin.drop_collection(rebuilt))
        asyncio.run(admin.close())


def test_a_chapter_failing_for_good_in_a_rebuild_blocks_the_switch_unless_forced(
    stack: Stack,
) -> None:
    """Hole 5 (RELIABILITY.md, Open): a chapter whose run failed for good during a full
    rebuild was simply missing from the new collection after the switch (the old one had
    it), and nothing was parked to redrive. Now its event is parked with the target, it is
    run once more, and the rebuild refuses to switch without it unless ``--force``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams.wiring import pipeline
    from tests.integration.test_failures import swapped_runner
    from tests.integration.test_operations import LONG, _parked

    suffix = uuid.uuid4().hex[:6]
    alias, topic, novel = f"miss_{suffix}", f"miss-events-{suffix}", f"miss-{suffix}"
    old = f"{alias}__old"
    model = pipeline(stack.settings).model

    async def setup() -> list[SourceRef]:
        store = MilvusVectorStore(stack.settings.milvus_url, alias)
        admin = AIOKafkaAdminClient(**stack.kafka.client_config())
        await admin.start()
        producer = await stack.start_producer()
        try:
            await store.create_collection(old, 384)
            await store.point_alias(old)
            await admin.create_topics([NewTopic(topic, 1, 1)])
            logged = []
            for chapter, text in (("short", "一句。"), ("long", LONG * 12)):
                value = event("chapter.created", novel, chapter, 1, title="t", text=text)
                sent = await producer.send_and_wait(topic, value, key=novel.encode())
                logged.append(SourceRef(topic=topic, partition=0, offset=sent.offset))
            return logged
        finally:
            await producer.stop()
            await store.close()
            await admin.close()

    logged = asyncio.run(setup())
    # The live index (the old collection and its books) holds both chapters.
    for chapter, at in zip(("short", "long"), logged, strict=True):
        _publish(stack, novel, _embedded(novel, chapter, 1, 1, model, 384, target=old, source=at))
    wait_for(lambda: _chapters_in(stack, old, novel) == {"short", "long"}, 120, "live", stack)
    env = {"SCRIBE_MILVUS_COLLECTION": alias, "SCRIBE_TOPIC_EVENTS": topic}

    # Results over 4,000 bytes fail for good: the long chapter's (3 chunks), on each attempt;
    # the short one's (one chunk) fits.
    with swapped_runner(stack, "failing-runner", {"SCRIBE_MAX_RESULT_BYTES": "4000"}):
        refused = stack.scribe("replay", "--reembed", timeout=600, env_extra=env)
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert "RebuildIncomplete" in refused.stderr and f"{novel}/long" in refused.stderr
        alias_now = asyncio.run(_physical(stack, alias))
        assert alias_now == old  # not switched: search still finds the long chapter
        letters = [p for p in _parked(stack, novel) if p["target"]]
        assert len(letters) == 2, letters  # its run, and the run again: both parked
        assert all(p["retriable"] and p["target"].startswith(f"{alias}__") for p in letters)

        forced = stack.scribe("replay", "--reembed", "--force", timeout=600, env_extra=env)
        assert forced.returncode == 0, forced.stderr[-3000:]
    summary = json.loads(forced.stdout)
    assert summary["missing"] == [f"{novel}/long"] and summary["retried"] == [f"{novel}/long"]
    assert asyncio.run(_physical(stack, alias)) == summary["collection"]
    assert _chapters_in(stack, summary["collection"], novel) == {"short"}


async def _physical(stack: Stack, alias: str) -> str | None:
    store = MilvusVectorStore(stack.settings.milvus_url, alias)
    try:
        return await store.physical()
    finally:
        await store.close()
