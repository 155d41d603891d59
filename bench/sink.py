"""Scenario 5: the result agent's Milvus write rate against raw batched upserts.

The same pre-built ``chapter.embedded`` results (random unit 384-d vectors) are written
two ways, each into its own collection (same schema and index, made by
``MilvusVectorStore.ensure_collection``):

* agent: ``ResultAgent.handle_batch`` with ``MilvusVectorStore`` and a ``SqliteLedger`` on
  a temp file, in batches of ``SCRIBE_SINK_BATCH_SIZE`` messages (decode, ledger check,
  upsert + trim per chapter, one flush per batch, ledger records);
* raw: ``MilvusClient.upsert`` of all the batch's rows in one call, then ``flush``, with
  the rows built before the clock starts.

Halves run A-B-B-A to cancel drift; rows/s is rows written over the time spent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.ledger import SqliteLedger
from agents.milvus_store import MilvusVectorStore
from agents.result_agent import ResultAgent, ResultMessage
from agents.vector_store import chunk_rows
from schemas import ChapterEmbedded, ChunkVector, ScribeError, SourceRef

MODEL = "multilingual-e5-small-q4"
DIMENSION = 384


class _NoDeadLetters:
    """Dead-letter port that fails loudly: every bench result must be valid."""

    async def dead_letter(
        self, *, key: bytes | None, value: bytes, source: SourceRef, error: ScribeError
    ) -> None:
        """Raise: a bench result was rejected."""
        raise RuntimeError(f"bench result dead-lettered: {error}")


def build_results(novel: str, chapters: int, chunks: int, seed: int) -> list[ChapterEmbedded]:
    """``chapters`` results of ``chunks`` random unit vectors each."""
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
                model=MODEL,
                dimension=DIMENSION,
                pipeline_version="bench",
                source=SourceRef(topic="bench-sink", partition=0, offset=c),
                chunks=tuple(
                    ChunkVector(
                        chunk_no=i,
                        text=f"第{c + 1}回 第{i}段：孙悟空大闹天宫。" * 12,
                        vector=tuple(float(x) for x in vectors[i]),
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


async def _agent_round(agent: ResultAgent, batches: Sequence[list[ResultMessage]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        await agent.handle_batch(batch)
    return time.perf_counter() - start


def _raw_round(client: Any, alias: str, batches: Sequence[list[dict[str, Any]]]) -> float:
    start = time.perf_counter()
    for rows in batches:
        client.upsert(alias, rows)
        client.flush(alias)
    return time.perf_counter() - start


async def run_sink(
    uri: str, chapters: int, chunks: int, batch_size: int, suffix: str
) -> dict[str, Any]:
    """Write ``chapters`` x ``chunks`` rows both ways; return rows/s of each and the ratio."""
    from pymilvus import MilvusClient

    agent_alias, raw_alias = f"bench_sink_agent_{suffix}", f"bench_sink_raw_{suffix}"
    half = max(1, chapters // 2)
    agent_sets = [
        build_results("sink-agent-a", half, chunks, 1),
        build_results("sink-agent-b", chapters - half, chunks, 2),
    ]
    raw_sets = [
        build_results("sink-raw-a", half, chunks, 1),
        build_results("sink-raw-b", chapters - half, chunks, 2),
    ]
    agent_batches = [_batches(_messages(s), batch_size) for s in agent_sets]
    raw_batches = [
        [[row for r in b for row in chunk_rows(r)] for b in _batches(s, batch_size)]
        for s in raw_sets
    ]
    warm_agent = _batches(_messages(build_results("sink-warm-agent", 2, chunks, 3)), batch_size)
    warm_raw = [
        [row for r in build_results("sink-warm-raw", 2, chunks, 3) for row in chunk_rows(r)]
    ]

    store = MilvusVectorStore(uri, agent_alias)
    raw_store = MilvusVectorStore(uri, raw_alias)
    tmp = Path(tempfile.mkdtemp(prefix="scribe-bench-sink-"))
    ledger = SqliteLedger(tmp / "ledger.sqlite3", agent_alias)
    client = MilvusClient(uri=uri)
    try:
        await store.ensure_collection(MODEL, DIMENSION)
        await raw_store.ensure_collection(MODEL, DIMENSION)
        agent = ResultAgent(store=store, ledger=ledger, dead_letters=_NoDeadLetters())
        await _agent_round(agent, warm_agent)
        await asyncio.to_thread(_raw_round, client, raw_alias, warm_raw)
        raw_s = await asyncio.to_thread(_raw_round, client, raw_alias, raw_batches[0])
        agent_s = await _agent_round(agent, agent_batches[0])
        agent_s += await _agent_round(agent, agent_batches[1])
        raw_s += await asyncio.to_thread(_raw_round, client, raw_alias, raw_batches[1])
        counted = await store.count()
    finally:
        client.close()
        await store.close()
        await raw_store.close()
        await ledger.close()
        shutil.rmtree(tmp, ignore_errors=True)
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
        "ratio_agent_raw": round(agent_rate / raw_rate, 3),
        "agent_rows_in_collection": counted,
    }
