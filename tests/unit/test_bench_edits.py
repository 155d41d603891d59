"""The edit workload's pure parts: edits, statistics, byte accounting, targets, report."""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any

import numpy as np
import pytest

from bench.analysis import rep_stats, rep_summary
from bench.edit_report import edit_targets, edits_section, repeats_section
from bench.edits import (
    KINDS,
    artifact_counts,
    chunk_bytes,
    donor_paragraphs,
    edit_paragraph,
    edit_plan,
    expected_reuse,
    growth_per_100,
    paragraph_index,
    percentile,
    prom_value,
    ratio_stats,
    size_delta,
    stats,
    v1_bytes,
    v2_bytes,
)
from bench.workload import sample_chapters
from schemas import ChapterEmbedded, ChunkVector, InvalidEvent, SourceRef, parse_result

PARAS = ["标题", "短。", *[f"第{i}段" + "孙悟空大闹天宫。" * 4 for i in range(10)], "尾。"]
TEXT = "\n".join(PARAS)


def test_paragraph_index_is_in_the_middle_half_and_skips_short_lines() -> None:
    for where in (0.0, 0.3, 0.5, 0.999):
        i = paragraph_index(PARAS, where)
        assert len(PARAS) // 4 <= i < len(PARAS) - len(PARAS) // 4
        assert len(PARAS[i]) >= 20
    assert paragraph_index(["a"], 0.5) == 0
    with pytest.raises(ValueError):
        paragraph_index([], 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_edit_paragraph_changes_exactly_one_paragraph(kind: str) -> None:
    other = "新的一段：唐僧取经。" * 3
    new = edit_paragraph(TEXT, kind, 0.5, other).split("\n")
    old = TEXT.split("\n")
    if kind == "insert":
        assert len(new) == len(old) + 1 and other in new
        new.remove(other)
        assert new == old
    elif kind == "delete":
        assert len(new) == len(old) - 1
        assert sum(1 for p in old if p not in new) == 1
    else:
        assert len(new) == len(old)
        assert sum(1 for a, b in zip(old, new, strict=True) if a != b) == 1
    with pytest.raises(ValueError):
        edit_paragraph(TEXT, "rewrite", 0.5, other)


def test_edit_plan_chains_versions_and_is_deterministic() -> None:
    base = [c.text for c in sample_chapters()[:2]]
    donors = donor_paragraphs(c.text for c in sample_chapters()[5:])
    plan = edit_plan(base, donors, 3)
    assert plan == edit_plan(base, donors, 3)
    assert len(plan) == 3
    for rep, r in enumerate(plan):
        assert len(r.one) == len(KINDS) * len(base) and len(r.burst) == len(base)
        assert {s.kind for s in r.one} == set(KINDS)
        assert all(s.rep == rep for s in r.steps)
        # consecutive one-at-a-time edits hit different chapters
        assert all(a.chapter != b.chapter for a, b in zip(r.one, r.one[1:], strict=False))
    for chapter in range(len(base)):
        steps = [s for r in plan for s in r.steps if s.chapter == chapter]
        assert [s.version for s in steps] == list(range(2, 2 + len(steps)))
        texts = [base[chapter], *(s.text for s in steps)]
        assert all(a != b for a, b in itertools.pairwise(texts))
    with pytest.raises(ValueError):
        edit_plan([], donors, 1)


def test_donor_paragraphs_are_paragraph_sized() -> None:
    donors = donor_paragraphs(["短\n" + "长" * 100 + "\n" + "很长" * 400])
    assert donors == ["长" * 100]


def test_expected_reuse_counts_new_texts_only() -> None:
    assert expected_reuse(["a", "b", "c"], ["a", "x", "c", "y"]) == (2, 2)
    assert expected_reuse([], ["a"]) == (1, 0)
    assert expected_reuse(["a"], ["a", "a"]) == (0, 2)


def test_percentile_and_stats() -> None:
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([0, 10], 95) == pytest.approx(9.5)
    s = stats([1, None, 3, float("nan"), 2])
    assert s == {"n": 3, "median": 2.0, "p95": 2.9, "min": 1.0, "max": 3.0}
    assert stats([])["median"] is None


def test_ratio_stats_over_repetitions() -> None:
    r = ratio_stats([(8.0, 2.0), (9.0, 3.0), (10.0, None), (5.0, 1.0)])
    assert r["values"] == [4.0, 3.0, None, 5.0]
    assert r["n"] == 3 and r["median"] == 4.0 and r["min"] == 3.0 and r["max"] == 5.0


def _result(chunks: int = 3, dim: int = 384) -> ChapterEmbedded:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((chunks, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n",
        chapter_id="ch0001",
        version=2,
        title="第一回",
        model="m",
        dimension=dim,
        pipeline_version="p",
        source=SourceRef(topic="t", partition=0, offset=1),
        chunks=tuple(
            ChunkVector(
                chunk_no=i, text="孙悟空大闹天宫。", vector=tuple(float(x) for x in vectors[i])
            )
            for i in range(chunks)
        ),
    )


def test_v1_and_v2_bytes_carry_the_same_result() -> None:
    result = _result()
    v1, v2 = v1_bytes(result), v2_bytes(result)
    assert b'"schema_version":1' in v1 and b'"schema_version":2' in v2
    assert "孙悟空".encode() in v1  # UTF-8, not \\u escapes, as pydantic writes it
    back1, back2 = parse_result(v1), parse_result(v2)
    assert isinstance(back1, ChapterEmbedded) and isinstance(back2, ChapterEmbedded)
    assert back2 == result
    for a, b in zip(back1.chunks, result.chunks, strict=True):
        assert a.text == b.text
        assert max(abs(x - y) for x, y in zip(a.vector, b.vector, strict=True)) < 1e-6
    # 384 floats of a unit vector: ~10.5 characters each in JSON with 7 decimals (about
    # 0.0xxxxxx, a sign half the time, a comma), 4 bytes x 4/3 in base64 as float32: just
    # under 2x for the vectors; the rest of the message (ids, chunk texts) is the same
    parts = chunk_bytes(result)
    assert 1.8 < parts["v1_vector"] / parts["v2_vector"] < 2.1
    assert parts["v2_vector"] == 3 * (2048 + 2)
    assert len(v1) - len(v2) == parts["v1_vector"] - parts["v2_vector"]


def test_artifact_counts_reads_the_flows_summary() -> None:
    from prefect_bridge.chapter import chapter_summary

    md = chapter_summary(_result(chunks=5), {"embed": 1.0}, reused=3)
    assert artifact_counts(md) == (3, 2)
    assert artifact_counts("| chunks | 5 |") is None
    assert artifact_counts("") is None


def test_prom_value_sums_the_metrics_samples() -> None:
    text = "\n".join(
        [
            "# HELP scribe_embedded_chunks_total Chunks embedded",
            "# TYPE scribe_embedded_chunks_total counter",
            "scribe_embedded_chunks_total 12.0",
            "scribe_embedded_chunks_created 1.7e9",
            'scribe_reused_chunks_total{model="a"} 3.0',
            'scribe_reused_chunks_total{model="b"} 4.0',
        ]
    )
    assert prom_value(text, "scribe_embedded_chunks_total") == 12.0
    assert prom_value(text, "scribe_reused_chunks_total") == 7.0
    assert prom_value(text, "scribe_missing_total") == 0.0


def test_growth_and_size_delta() -> None:
    assert growth_per_100(1000, 3000, 20) == 10_000
    assert growth_per_100(None, 3000, 20) is None
    assert growth_per_100(1000, 3000, 0) is None
    assert size_delta({"a": 1, "b": 5}, {"a": 11, "b": 5, "c": 3}) == {"a": 10, "c": 3}


def _edits(db_by_rep: list[float], speed: list[float], bytes_ratio: list[float]) -> dict[str, Any]:
    def st(values: list[float]) -> dict[str, Any]:
        return {**stats(values), "values": values}

    pipe = {
        "embedded_per_edit": stats([1, 2, 2, 3, 5]),
        "embedded_median_by_rep": [2.0, 2.0, 3.0],
        "latency_one_s": stats([2.0, 3.0]),
        "p50_one_by_rep": [2.5, 2.4, 2.6],
        "counters": {"embedded": 20.0, "reused": 100.0},
    }
    return {
        "edits": {
            "reps": 3,
            "chapters": ["3: 第三回"],
            "edits_per_rep_per_pipeline": 4,
            "pipelines": {"incremental": pipe, "full": {**pipe, "counters": None}},
            "latency_speedup_one": st(speed),
            "latency_speedup_burst": st(speed),
            "prefect_db": {
                "database_per_100_by_rep": db_by_rep,
                "database_per_100": stats(db_by_rep, 0),
                "flow_run_table_per_100": stats([5000.0]),
            },
            "results_bytes": {
                "messages": 10,
                "chunks": 200,
                "v1_bytes_per_chunk": 4300,
                "v2_bytes_per_chunk": 1900,
                "ratio_v1_v2": st(bytes_ratio),
                "decode_ms_per_chunk": {"v1": 0.5, "v2": 0.1},
                "v1_roundtrip_mismatches": 0,
            },
        },
        "config": {"commit": "abc1234"},
    }


def test_edit_targets_against_a_baseline() -> None:
    results = _edits([10_000.0, 12_000.0, 11_000.0], [4.5, 5.0, 3.9], [2.3, 2.3, 2.2])
    baseline = {"commit": "1c6d518", "database_per_100": {"median": 220_000.0}}
    rows = {t["target"].split(",")[0]: t for t in edit_targets(results, baseline)}
    assert rows["edit: median chunks embedded per one-paragraph edit"]["met"] is True
    speed = rows["edit -> searchable p50"]
    assert speed["measured"] == 4.5 and speed["met"] is True
    assert speed["spread"]["min"] == 3.9 and speed["spread"]["n"] == 3
    db = rows["Prefect DB growth per chapter version"]
    assert db["measured"] == 20.0 and db["met"] is True
    assert rows["results-topic bytes per chunk"]["met"] is True
    # without a baseline the database target is not measured
    rows = {t["target"].split(",")[0]: t for t in edit_targets(results, {"commit": None})}
    assert rows["Prefect DB growth per chapter version"]["met"] is None
    assert edit_targets({}) == []


def test_edits_section_renders() -> None:
    results = _edits([10_000.0], [4.5], [2.3])
    text = "\n".join(edits_section(results, {"commit": "1c6d518", "method": "pg_database_size"}))
    assert "incremental" in text and "full" in text
    assert "20 / 100" in text  # the runner's counters
    assert "1c6d518" in text and "pg_database_size" in text
    assert edits_section({}) == []


def test_rep_summary_and_stats() -> None:
    scen = {
        "direct": {
            "burst": {"chunks_per_s": 2.0, "chunks": 100},
            "cpu_s": {"burst": {"ours": 100.0}},
            "embed_s_isolated": [10.0, 11.0],
        },
        "warm": {
            "burst": {"chunks_per_s": 1.9, "chunks": 100},
            "cpu_s": {"burst": {"ours": 110.0}},
            "isolated": {"latency_p50_s": 11.0},
            "isolated_breakdown": {"overhead_s": 0.8, "embed_task_s": 10.2},
        },
    }
    r = rep_summary(1, ["direct", "warm"], scen, {"ratio_agent_raw": 0.9})
    assert r["warm_vs_direct"] == 0.95 and r["sink_agent_vs_raw"] == 0.9
    assert r["latency_goal_s"] == 11.5 and r["warm_p50_over_goal_s"] == -0.5
    assert math.isclose(r["warm_vs_direct_cpu"], 0.909, abs_tol=1e-3)
    results = {"repeats": [r, {**r, "warm_vs_direct": 0.85}, {**r, "warm_vs_direct": None}]}
    st = rep_stats(results, "warm_vs_direct")
    assert st is not None and st["n"] == 2 and st["min"] == 0.85 and st["max"] == 0.95
    assert rep_stats({}, "warm_vs_direct") is None
    assert "| 1 | direct then warm | 0.95" in "\n".join(repeats_section(results))


def test_result_bytes_accounts_per_repetition_and_gzipped() -> None:
    from bench.edit_workload import result_bytes

    first, edited = _result(chunks=2), _result(chunks=3)
    values = [v2_bytes(first), v2_bytes(edited), b'{"event_type":"novel.removed"}']
    with pytest.raises(InvalidEvent):  # not a valid result: the bench must not hide it
        result_bytes(values, {})
    out = result_bytes(values[:2], {("n/ch0001", 2): 0})
    assert out["messages"] == 2 and out["chunks"] == 5
    assert out["per_rep"]["0"]["messages"] == 2  # both are version 2 of ch0001
    assert out["ratio_v1_v2"]["n"] == 1 and out["ratio_v1_v2"]["median"] > 1
    assert out["v1_roundtrip_mismatches"] == 0
    gz = out["gzip_bytes_per_chunk"]
    assert gz["v1"] < out["v1_bytes_per_chunk"] and gz["v2"] < out["v2_bytes_per_chunk"]
    assert out["decode_ms_per_chunk"]["v1"] > 0
