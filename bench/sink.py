"""Scenario 5: the result agent's Milvus write rate against raw batched upserts.

The same pre-built ``chapter.embedded`` results (random unit 384-d vectors) are written
two ways, each into its own collection (same schema and index, made by
``MilvusVectorStore.ensure_collection``):

* agent: ``ResultAgent.handle_batch`` with ``MilvusVectorStore`` and a ``SqliteLedger`` on
  a temp file, in batches of ``SCRIBE_SINK_BATCH_SIZE`` messages (decode, ledger check,
  one upsert per batch, one flush, the ledger records). The ledger first gets the
  *submitted* rows the chapter agent records in the pipeline, so, as there, new chapters
  need no trim; what a trim costs where it is needed (a rebuild's fresh ledger, a shorter
  edit) is measured apart: one OR-ed ``delete`` per batch;
* raw: ``MilvusClient.upsert`` of all the batch's rows in one call, then ``flush``, with
  the rows built before the clock starts.

Batches alternate A-B, B-A to cancel drift (the machine's load changes); rows/s is rows
written over the time spent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from agents.index_catalog import SingleIndex
from agents.result_agent import ResultAgent, ResultMessage
from agents.vector_store import chunk_rows
from bench.watch import milvus_client
from bench.workload import percentile
from schemas import ChapterEmbedded, ChunkVector, ScribeError, SourceRef
from streams.adapters.ledger.sqlite import SqliteLedger
from streams.adapters.milvus.store import MilvusVectorStore

MODEL = "multilingual-e5-small-q4"
DIMENSION = 384


class _NoDeadLetters:
    """Dead-letter port that fails loudly: every bench result must be valid."""

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Raise: a bench result was rejected."""
        raise RuntimeError(f"bench result dead-lettered: {error}")


class _Timed:
    """Wraps a port; adds the time spent in each awaited method to ``totals``."""

    def __init__(self, inner: Any, totals: dict[str, float], prefix: str) -> None:
        self._inner, self._totals, self._prefix = inner, totals, prefix

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        key = f"{self._prefix}.{name}"

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self._totals[key] = self._totals.get(key, 0.0) + time.perf_counter() - start

        return timed


def build_results(
    novel: str, chapters: int, chunks: int, seed: int, model: str = MODEL
) -> list[ChapterEmbedded]:
    """``chapters`` results of ``chunks`` random unit vectors each, as the flow writes them."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(chapters):
        vectors = rng.standard_normal((chunks, DIMENSION)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.append(
            ChapterEmbedded(
                event_id=uuid.uuid4(),
                novel_id=novel,
                chapter_id=f"ch{c + 1:04d}",
                version=1,
                model=model,
                dimension=DIMENSION,
                pipeline_version="bench",
                source=SourceRef(topic="bench-sink", partition=0, offset=c),
                chunks=tuple(
                    ChunkVector(
                        chunk_no=i,
                        text=f"第{c + 1}回 第{i}段：孙悟空大闹天宫。" * 12,
                        # rounded as the flow rounds them: the same message sizes
                        vector=tuple(round(float(x), 7) for x in vectors[i]),
                    )
                    for i in range(chunks)
                ),
            )
        )
    return out


def _batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _messages(results: Sequence[ChapterEmbedded]) -> list[ResultMessage]:
    out = []
    for r in results:
        assert r.source is not None
        out.append(ResultMessage(r.novel_id.encode(), r.model_dump_json().encode(), r.source))
    return out


async def _agent_batch(agent: ResultAgent, batch: list[ResultMessage]) -> float:
    start = time.perf_counter()
    await agent.handle_batch(batch)
    return time.perf_counter() - start


def _raw_batch(
    client: Any, alias: str, rows: list[dict[str, Any]], totals: dict[str, float]
) -> float:
    t0 = time.perf_counter()
    client.upsert(alias, rows)
    t1 = time.perf_counter()
    client.flush(alias)
    t2 = time.perf_counter()
    totals["upsert"] = totals.get("upsert", 0.0) + t1 - t0
    totals["flush"] = totals.get("flush", 0.0) + t2 - t1
    return t2 - t0


async def _ensure(store: MilvusVectorStore, attempts: int = 3) -> None:
    """``ensure_collection``, retried: the first call after an idle spell may be refused."""
    for attempt in range(1, attempts + 1):
        try:
            await store.ensure_collection(MODEL, DIMENSION)
            return
        except Exception:
            if attempt == attempts:
                raise
            await asyncio.sleep(2 * attempt)


async def _trim_probe(store: MilvusVectorStore, results: Sequence[ChapterEmbedded]) -> float:
    """Seconds of the agent's trim of one batch of chapters (one OR-ed ``delete``)."""
    start = time.perf_counter()
    await store.trim_chapters([(r.novel_id, r.chapter_id, len(r.chunks)) for r in results])
    return time.perf_counter() - start


async def run_sink(
    uri: str, chapters: int, chunks: int, batch_size: int, suffix: str
) -> dict[str, Any]:
    """Write ``chapters`` x ``chunks`` rows both ways, batch by batch in A-B / B-A order."""
    agent_alias, raw_alias = f"bench_sink_agent_{suffix}", f"bench_sink_raw_{suffix}"
    agent_results = build_results("sink-agent", chapters, chunks, 1)
    raw_results = build_results("sink-raw", chapters, chunks, 1)
    agent_batches = _batches(_messages(agent_results), batch_size)
    raw_batches = [
        [row for r in b for row in chunk_rows(r)] for b in _batches(raw_results, batch_size)
    ]
    warm_agent = _messages(build_results("sink-warm-agent", 2, chunks, 3))
    warm_raw = [row for r in build_results("sink-warm-raw", 2, chunks, 3) for row in chunk_rows(r)]

    client = await asyncio.to_thread(milvus_client, uri)
    store = MilvusVectorStore(uri, agent_alias)
    raw_store = MilvusVectorStore(uri, raw_alias)
    tmp = Path(tempfile.mkdtemp(prefix="scribe-bench-sink-"))
    ledger = SqliteLedger(tmp / "ledger.sqlite3", agent_alias)
    parts: dict[str, float] = {}
    raw_parts: dict[str, float] = {}
    agent_times: list[float] = []
    raw_times: list[float] = []
    try:
        await _ensure(store)
        await _ensure(raw_store)
        agent = ResultAgent(
            catalog=SingleIndex(
                cast(Any, _Timed(store, parts, "store")),
                cast(Any, _Timed(ledger, parts, "ledger")),
            ),
            dead_letters=_NoDeadLetters(),
        )
        for r in agent_results:  # as the chapter agent records each submission
            await ledger.record_submitted(r.novel_id, r.chapter_id, r.version, "bench-run")
        await _agent_batch(agent, warm_agent)
        await asyncio.to_thread(_raw_batch, client, raw_alias, warm_raw, {})
        parts.clear()
        for i, (a_batch, r_rows) in enumerate(zip(agent_batches, raw_batches, strict=True)):
            if i % 2:
                raw_times.append(
                    await asyncio.to_thread(_raw_batch, client, raw_alias, r_rows, raw_parts)
                )
                agent_times.append(await _agent_batch(agent, a_batch))
            else:
                agent_times.append(await _agent_batch(agent, a_batch))
                raw_times.append(
                    await asyncio.to_thread(_raw_batch, client, raw_alias, r_rows, raw_parts)
                )
        trim_s = await _trim_probe(raw_store, raw_results[:batch_size])
        counted = await store.count()
    finally:
        client.close()
        await store.close()
        await raw_store.close()
        await ledger.close()
        shutil.rmtree(tmp, ignore_errors=True)
    agent_s, raw_s = sum(agent_times), sum(raw_times)
    rows = chapters * chunks
    agent_rate, raw_rate = rows / agent_s, rows / raw_s
    return {
        "chapters": chapters,
        "chunks_per_chapter": chunks,
        "rows": rows,
        "batch_size": batch_size,
        "agent_s": round(agent_s, 3),
        "raw_s": round(raw_s, 3),
        "agent_rows_per_s": round(agent_rate, 1),
        "raw_rows_per_s": round(raw_rate, 1),
        # Paired, adjacent batches (A-B, B-A): the median of their ratios shrugs off load
        # spikes from other work on the machine; the ratio of the totals does not.
        "ratio_agent_raw_totals": round(agent_rate / raw_rate, 3),
        "ratio_agent_raw": round(
            percentile([r / a for a, r in zip(agent_times, raw_times, strict=True)], 50), 3
        ),
        "agent_batch_s": [round(t, 3) for t in agent_times],
        "raw_batch_s": [round(t, 3) for t in raw_times],
        "agent_rows_in_collection": counted,
        "agent_parts_s": {
            **{k: round(v, 3) for k, v in sorted(parts.items())},
            "other (decode, decide, batch view)": round(agent_s - sum(parts.values()), 3),
        },
        "raw_parts_s": {k: round(v, 3) for k, v in sorted(raw_parts.items())},
        "trim_batch_ms": round(1000 * trim_s, 2),
        "trim_batch_chapters": min(batch_size, chapters),
    }
