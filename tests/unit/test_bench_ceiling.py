"""The ceiling bench's parts that need no stack: the zero-cost server through the real
OpenAI-compatible embedder, and how repetitions become medians and targets."""

from __future__ import annotations

import math
from typing import Any

from bench.ceiling_report import markdown, summarize, targets
from bench.zero_server import DIMENSION, MODEL, ZeroServer
from prefect_bridge.openai_embedding import OpenAIEmbedder
from streams.embedded.processes import free_port


def test_the_zero_server_answers_deterministic_unit_vectors_through_the_real_embedder() -> None:
    with ZeroServer(free_port()) as zero:
        embedder = OpenAIEmbedder(zero.url, MODEL, dimension=DIMENSION, batch_size=2)
        try:
            a, b, again = embedder.embed_passages(["悟空", "八戒", "悟空"])
        finally:
            embedder.close()
    assert a == again and len(a) == DIMENSION
    assert math.isclose(sum(v * v for v in b), 1.0, rel_tol=1e-4)
    assert zero.env()["SCRIBE_EMBEDDER"] == "openai"


def phase(chapters_per_s: float, db: int, chunks: int, **kw: Any) -> dict[str, Any]:
    return {
        "chapters": 10,
        "chapters_per_s": chapters_per_s,
        "chunks_per_s": chunks / 10,
        "prefect_db_bytes_per_chapter": db,
        "seconds": 10.0,
        "chunks": chunks,
        "cpu_s": {"service.prefect": 3.0, "other": 0.5, "machine": 10 / chapters_per_s},
        **kw,
    }


def rep(batch: float, per_chapter: float) -> dict[str, Any]:
    return {
        "live": phase(2.0, 180_000, 2000),  # 5 versions of 100 chapters, 4 chunks each
        "replay_batch": phase(batch, 9_000, 400),
        "replay_per_chapter": phase(per_chapter, 150_000, 400),
        "raw_sink": phase(40.0, 0, 400),
    }


def test_medians_and_targets_over_the_repetitions() -> None:
    reps = [rep(30.0, 5.0), rep(24.0, 4.0), rep(36.0, 6.0)]
    summary = summarize(reps, versions=5)
    assert summary["phases"]["replay_batch"]["chapters_per_s"] == {
        "median": 30.0,
        "min": 24.0,
        "max": 36.0,
    }
    assert summary["batch_vs_per_chapter"]["median"] == 6.0
    assert summary["batch_vs_per_chapter_cpu"]["median"] == 6.0  # CPU-s ran 2.0 vs 0.33
    assert summary["replay_chunks_vs_live"]["median"] == 1.0  # 400 of 2000 / 5
    met = {t["target"].split(" >=")[0].split(" <=")[0]: t["met"] for t in targets(summary, None)}
    assert met == {
        "replay with batched runs": True,  # 6x, and 0.75x the raw sink
        "Prefect DB growth per replayed chapter": True,  # 20x
        "a replay of 5 versions per chapter runs": True,
    }
    low = targets(summarize([rep(8.0, 4.0)], versions=5), {"ratio": 0.7})
    assert [t["met"] for t in low] == [False, False, True, True, False]


def test_the_section_holds_every_phase_and_every_target() -> None:
    reps = [rep(30.0, 5.0)]
    summary = summarize(reps, versions=5)
    result = {
        "finished_at": "2026-12-06T22:00:00+00:00",
        "config": {
            "commit": "abc",
            "novels": 10,
            "chapters_per_novel": 10,
            "versions": 5,
            "reps": 1,
            "batch": 50,
            "runner_limit": 2,
        },
        "machine": {"nproc": 2},
        "reps": reps,
        "summary": summary,
        "protocol": {
            "chunks": 192,
            "batch": 16,
            "threads": 2,
            "median_chunks_per_s": {"in_process": 40.0, "openai_api": 36.0},
            "ratio": 0.9,
        },
        "targets": targets(summary, {"ratio": 0.9}),
    }
    md = markdown(result)
    assert md.startswith("<!-- ceiling-bench:begin -->") and md.endswith("-->")
    for name in ("| live |", "| replay batch |", "| replay per chapter |", "| raw sink |"):
        assert name in md
    assert md.count("| yes |") + md.count("| no |") == 5 and "ratio 0.9" in md
