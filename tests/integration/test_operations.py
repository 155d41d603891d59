"""The operational paths keep the guarantees: redrive, rebuild switch, resink, poison results.

Each test here was written to make one defect of the operational paths happen on the real
services (issue: one writer per novel); each failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from schemas import ChapterEmbedded, ChunkVector, SourceRef
from streams.adapters.milvus.store import MilvusVectorStore
from streams.commands.status import kafka_report
from streams.wiring import open_live_ledger
from tests.integration.harness import Stack, converged, event, index_of, not_pending, wait_for
from tests.integration.test_failures import swapped_runner

pytestmark = pytest.mark.integration

LONG = (
    "花果山上有一块仙石，受天真地秀，日精月华，感之既久，遂有灵通之意。"
    "内育仙胞，一日迸裂，产一石卵，见风化作一个石猴，五官俱备，四肢皆全。"
)


def _send(stack: Stack, *events: bytes, novel: str) -> None:
    asyncio.run(stack.produce([(novel.encode(), e) for e in events]))


def _publish_results(stack: Stack, results: list[ChapterEmbedded]) -> None:
    """Write results straight to the results topic, as a flow or a replay would."""

    async def run() -> None:
        producer = await stack.start_producer()
        try:
            for r in results:
                await producer.send_and_wait(
                    stack.settings.topic_embeddings,
                    key=r.novel_id.encode(),
                    value=r.model_dump_json().encode(),
                )
        finally:
            await producer.stop()

    asyncio.run(run())


def _drained(stack: Stack, topic: str) -> bool:
    """The worker has committed every message of ``topic`` (nothing in flight)."""
    report = asyncio.run(kafka_report(stack.settings))
    return all(p["lag"] == 0 for p in report["partitions"] if p["topic"] == topic)


def _results_drained(stack: Stack) -> bool:
    """The worker has committed every message of the results topic (nothing in flight)."""
    return _drained(stack, stack.settings.topic_embeddings)


def _parked(stack: Stack, key: str) -> list[dict[str, Any]]:
    out = stack.scribe("dlq", "list", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    return [p for p in json.loads(out.stdout) if p["key"] == key]


def _embedded(
    novel: str, chapter: str, version: int, chunks: int, model: str, dim: int, **extra: Any
) -> ChapterEmbedded:
    """A result as a flow makes it, with unit vectors of ``dim`` dimensions."""
    vector = tuple([1 / math.sqrt(dim)] * dim)
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id=chapter,
        version=version,
        model=model,
        dimension=dim,
        pipeline_version="test",
        chunks=tuple(
            ChunkVector(chunk_no=i, text=f"{chapter} v{version} #{i}", vector=vector)
            for i in range(chunks)
        ),
        **extra,
    )


def _describe(stack: Stack) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        store = stack.store()
        try:
            return await store.describe()
        finally:
            await store.close()

    return asyncio.run(run())


def test_a_redriven_event_stays_behind_its_novels_deletion(stack: Stack) -> None:
    """Parked before ``novel.deleted``, redriven after it: the novel stays empty."""
    novel = f"redrive-{uuid.uuid4().hex[:6]}"
    with swapped_runner(stack, "failing-runner", {"SCRIBE_MAX_RESULT_BYTES": "1200"}):
        _send(stack, event("chapter.created", novel, "c1", 1, title="t", text=LONG), novel=novel)
        letters = wait_for(
            lambda: [p for p in _parked(stack, novel) if p["retriable"]] or None,
            300,
            "the failed chapter parked in the DLQ",
            stack,
            interval=3,
        )
    _send(stack, event("novel.deleted", novel, None, 1), novel=novel)

    async def tombstone() -> int | None:
        ledger = await open_live_ledger(stack.settings)
        try:
            return await ledger.novel_deleted_offset(novel)
        finally:
            await ledger.close()

    wait_for(lambda: asyncio.run(tombstone()) is not None, 120, "the novel deletion applied")
    body = {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}}
    runs_before = len(stack.prefect("/flow_runs/filter", body))
    redriven = stack.scribe("dlq", "redrive", letters[0]["position"])
    assert redriven.returncode == 0, redriven.stderr

    # The chapter agent sees that the redriven write stands before the applied deletion
    # and leaves it out (defect 11): no new run, nothing pending, the novel stays empty.
    wait_for(lambda: _drained(stack, stack.settings.topic_events), 120, "redrive consumed", stack)
    wait_for(lambda: _drained(stack, stack.settings.topic_embeddings), 120, "sink idle", stack)
    assert len(stack.prefect("/flow_runs/filter", body)) == runs_before
    assert index_of(stack, novel) == {}

    assert not_pending(stack, novel, "c1")


def test_a_redriven_message_goes_back_to_the_partition_it_was_first_logged_on(
    stack: Stack,
) -> None:
    """Offsets order messages within one partition only: a redriven copy on another
    partition than its original (a keyless record, a key after the partition count grew)
    stood at its own, later position instead of where it was first logged (issue 19,
    hole 6; found by chaos seed 50). Here a record is logged on a partition its key does
    not hash to, as a producer with another partitioner or fewer partitions would."""
    from aiokafka.partitioner import DefaultPartitioner

    novel = f"origin-{uuid.uuid4().hex[:6]}"
    everyone = list(range(stack.settings.topic_partitions))
    hashed = int(DefaultPartitioner()(novel.encode(), everyone, everyone))
    logged_on = (hashed + 1) % len(everyone)

    async def send() -> None:
        producer = await stack.start_producer()
        try:
            await producer.send_and_wait(
                stack.settings.topic_events,
                value=b"{not json",
                key=novel.encode(),
                partition=logged_on,
            )
        finally:
            await producer.stop()

    asyncio.run(send())
    [first] = wait_for(lambda: _parked(stack, novel) or None, 120, "the record parked", stack)
    redriven = stack.scribe("dlq", "redrive", first["position"])
    assert redriven.returncode == 0, redriven.stderr
    letters = wait_for(
        lambda: (lambda got: got if len(got) == 2 else None)(_parked(stack, novel)),
        120,
        "the redriven copy parked again",
        stack,
    )
    assert {(p["source"]["partition"], p["source"]["offset"]) for p in letters} == {
        (logged_on, first["source"]["offset"])
    }, letters


def test_after_a_rebuild_switch_a_shorter_edit_leaves_no_stale_chunk(stack: Stack) -> None:
    """A rebuild made more chunks per chapter; the live path must trim against its books."""
    novel = f"switch-{uuid.uuid4().hex[:6]}"
    _send(stack, event("chapter.created", novel, "c1", 1, title="t", text=LONG), novel=novel)
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "v1 indexed", stack)
    live = _describe(stack)
    admin = MilvusVectorStore(stack.settings.milvus_url, stack.settings.milvus_collection)
    rebuilt = f"{live['collection']}__switch{uuid.uuid4().hex[:6]}"

    async def rebuild() -> None:
        await admin.create_collection(rebuilt, 384)

    asyncio.run(rebuild())
    # The rebuild's result for v1: a finer chunker made 8 chunks of the same chapter.
    _publish_results(stack, [_embedded(novel, "c1", 1, 8, live["model"], 384, target=rebuilt)])

    def rebuilt_rows() -> int:
        async def run() -> int:
            store = MilvusVectorStore(stack.settings.milvus_url, rebuilt)
            try:
                return len(await store.query_rows(f'novel_id == "{novel}"', ["id"]))
            finally:
                await store.close()

        return asyncio.run(run())

    wait_for(lambda: rebuilt_rows() == 8, 120, "the rebuild's 8 chunks", stack)
    try:
        previous = asyncio.run(admin.point_alias(rebuilt))
        assert previous == live["collection"]
        longer = LONG + "那猴在山中，却会行走跳跃，食草木，饮涧泉。"  # v2: one or two chunks
        _send(stack, event("chapter.updated", novel, "c1", 2, title="t", text=longer), novel=novel)
        wait_for(
            lambda: (index_of(stack, novel).get("c1") or ({0},))[0] == {2},
            300,
            "only v2 rows behind the alias (no stale chunk of the rebuild)",
            stack,
            interval=2,
        )
        versions, chunks, ids = index_of(stack, novel)["c1"]
        assert versions == {2} and chunks == list(range(len(chunks)))
        assert len(set(ids)) == len(ids)
    finally:
        asyncio.run(admin.point_alias(live["collection"]))
        asyncio.run(admin.drop_collection(rebuilt))
        asyncio.run(admin.close())


def test_a_resink_beside_a_live_worker_ends_at_the_newest_version(stack: Stack) -> None:
    novel = f"resink-live-{uuid.uuid4().hex[:6]}"
    _send(
        stack,
        event("chapter.created", novel, "c1", 1, title="t", text="第一稿。"),
        event("chapter.updated", novel, "c1", 2, title="t", text="第二稿。"),
        novel=novel,
    )
    wait_for(lambda: converged(stack, novel, {"c1": (2, 1)}), 300, "v2 indexed", stack)
    replay = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "replay", "--resink", "--novel", novel],
        env={**stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _send(stack, event("chapter.updated", novel, "c1", 3, title="t", text="第三稿。"), novel=novel)
    out, err = replay.communicate(timeout=600)
    assert replay.returncode == 0, err[-3000:]
    assert json.loads(out)["results_sent"] >= 2
    wait_for(lambda: converged(stack, novel, {"c1": (3, 1)}), 300, "v3 indexed", stack)
    wait_for(lambda: _results_drained(stack), 120, "the worker caught up", stack, interval=2)
    assert converged(stack, novel, {"c1": (3, 1)})


def test_a_result_milvus_rejects_is_dead_lettered_and_the_sink_goes_on(stack: Stack) -> None:
    """A result of another dimension (a model change gone wrong) must not stall the index."""
    novel = f"poison-{uuid.uuid4().hex[:6]}"
    model = _describe(stack)["model"]
    source = SourceRef(topic=stack.settings.topic_events, partition=0, offset=0)
    _publish_results(stack, [_embedded(novel, "bad", 1, 2, model, 8, source=source)])
    _send(stack, event("chapter.created", novel, "good", 1, title="t", text="好水！"), novel=novel)
    wait_for(
        lambda: converged(stack, novel, {"good": (1, 1)}),
        300,
        "the next chapter indexed past the rejected result",
        stack,
    )
    [letter] = wait_for(lambda: _parked(stack, novel) or None, 120, "the dead letter", stack)
    assert letter["error_class"] == "VectorStoreRejected" and letter["retriable"] is False
    assert letter["source"]["topic"] == stack.settings.topic_embeddings
    assert "bad" not in index_of(stack, novel)
    refused = stack.scribe("dlq", "redrive", letter["position"])
    assert refused.returncode != 0  # a result's letter is not sent to the input topic
    assert "input topic" in (refused.stderr + refused.stdout)


def test_a_redrive_after_retention_took_the_original_reads_the_copy(stack: Stack) -> None:
    """A run reads its event by position. A redriven copy stands at its original position
    (ordering) but is read at its own: retention may long have taken the original (issue
    19, hole 6). Before the fix the run read the original position, found it deleted and
    parked the chapter again, for good."""
    novel = f"retained-{uuid.uuid4().hex[:6]}"
    with swapped_runner(stack, "failing-runner", {"SCRIBE_MAX_RESULT_BYTES": "1200"}):
        _send(stack, event("chapter.created", novel, "c1", 1, title="t", text=LONG), novel=novel)
        [letter] = wait_for(
            lambda: [p for p in _parked(stack, novel) if p["retriable"]] or None,
            300,
            "the failed chapter parked in the DLQ",
            stack,
            interval=3,
        )
    original = letter["source"]

    async def retention() -> None:  # as retention.ms would, on the original's partition
        admin = AIOKafkaAdminClient(**stack.kafka.client_config())
        await admin.start()
        try:
            await admin.delete_records(
                {
                    TopicPartition(original["topic"], original["partition"]): RecordsToDelete(
                        original["offset"] + 1
                    )
                }
            )
        finally:
            await admin.close()

    asyncio.run(retention())
    redriven = stack.scribe("dlq", "redrive", letter["position"])
    assert redriven.returncode == 0, redriven.stderr
    wait_for(
        lambda: converged(stack, novel, {"c1": (1, 1)}),
        300,
        "the redriven chapter indexed from the copy's bytes",
        stack,
    )
    assert [p["position"] for p in _parked(stack, novel)] == [letter["position"]]
