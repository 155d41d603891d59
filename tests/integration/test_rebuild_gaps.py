"""The gaps of a full rebuild's switch (issue 19, hole 5; RELIABILITY.md's "Open").

A novel deleted and written again around the switch keeps what was written after its
deletion.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from schemas import ChapterEmbedded, NovelRemoved, SourceRef
from streams.adapters.kafka.client import start_producer
from streams.adapters.milvus.store import MilvusVectorStore
from tests.integration.harness import Stack, converged, event, wait_for
from tests.integration.test_operations import _describe, _embedded, _results_drained

pytestmark = pytest.mark.integration


def _log(stack: Stack, novel: str, value: bytes) -> SourceRef:
    """Produce one input event; where it was logged."""

    async def run() -> SourceRef:
        producer = await start_producer(stack.settings)
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
        producer = await start_producer(stack.settings)
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
