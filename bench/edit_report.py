"""The edit workload's targets and report sections, and the repetitions table.

The Prefect database growth target compares this run with a stored *before* measurement
(:data:`GROWTH_BASELINE`, written by ``python -m bench --only edits
--save-growth-baseline`` on the code that still passed the chapter text as a flow-run
parameter): the growth is only comparable across runs of the same workload.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GROWTH_BASELINE = Path(__file__).resolve().parent / "prefect-growth-before.json"

#: Issue 12's targets for the edit workload.
EMBEDDED_PER_EDIT_MAX = 3
EDIT_SPEEDUP_MIN = 4.0
DB_GROWTH_SHRINK_MIN = 10.0
RESULT_BYTES_SHRINK_MIN = 2.0

METHOD = (
    "pg_database_size of Prefect's database (PostgreSQL) before and after each segment of "
    "the edit workload (one pipeline's one-paragraph edits of one repetition, one at a "
    "time or in a burst, then 3 s for Prefect to persist events and logs), growth x 100 / "
    "chapter versions in the segment; the median over repetitions of the growth summed "
    "over a repetition's segments."
)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def load_baseline(path: Path = GROWTH_BASELINE) -> dict[str, Any] | None:
    """The stored *before* growth, or None."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def save_growth_baseline(results: dict[str, Any], path: Path = GROWTH_BASELINE) -> Path:
    """Store this run's growth per 100 chapter versions as the *before* baseline."""
    db = _get(results, "edits", "prefect_db") or {}
    inc = _get(results, "edits", "pipelines", "incremental") or {}
    baseline = {
        "measured_at": results.get("started_at") or datetime.now(UTC).isoformat(),
        "commit": _get(results, "config", "commit"),
        "command": results.get("command"),
        "what": "chapter text in the flow-run parameters",
        "method": METHOD,
        "database_per_100": db.get("database_per_100"),
        "database_per_100_by_rep": db.get("database_per_100_by_rep"),
        "flow_run_table_per_100": db.get("flow_run_table_per_100"),
        "params_text_per_100": db.get("params_text_per_100"),
        "params_stored_per_100": db.get("params_stored_per_100"),
        "tables_per_100": db.get("tables_per_100"),
        "ingest_per_100": db.get("ingest_per_100"),
        "params_bytes_per_run": inc.get("params_bytes"),
        "loadavg": [
            _get(results, "machine", "loadavg_start"),
            _get(results, "machine", "loadavg_end"),
        ],
    }
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return path


def _row(
    name: str, want: str, value: float | None, met: bool | None, spread: Any = None
) -> dict[str, Any]:
    return {"target": name, "wanted": want, "measured": value, "met": met, "spread": spread}


def _spread(st: dict[str, Any] | None) -> dict[str, Any] | None:
    if not st or not st.get("n"):
        return None
    return {k: st.get(k) for k in ("n", "min", "max", "values")}


def edit_targets(
    results: dict[str, Any], baseline: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Issue 12's four targets (none when the edit workload did not run)."""
    edits = results.get("edits")
    if not edits:
        return []
    baseline = baseline if baseline is not None else load_baseline()
    inc = _get(edits, "pipelines", "incremental") or {}
    per_edit = _get(inc, "embedded_per_edit", "median")
    by_rep = inc.get("embedded_median_by_rep") or []
    speed = edits.get("latency_speedup_one") or {}
    rb = _get(edits, "results_bytes", "ratio_v1_v2") or {}
    now = _get(edits, "prefect_db", "database_per_100", "median")
    before = _get(baseline, "database_per_100", "median")
    shrink = before / now if before is not None and now else None
    before_reps = (baseline or {}).get("database_per_100_by_rep") or []
    now_reps = _get(edits, "prefect_db", "database_per_100_by_rep") or []
    shrink_reps = [round(b / n, 2) for b, n in zip(before_reps, now_reps, strict=False) if b and n]
    return [
        _row(
            "edit: median chunks embedded per one-paragraph edit",
            f"<= {EMBEDDED_PER_EDIT_MAX}",
            per_edit,
            None if per_edit is None else per_edit <= EMBEDDED_PER_EDIT_MAX,
            _spread(
                {
                    "n": len(by_rep),
                    "min": min(by_rep, default=None),
                    "max": max(by_rep, default=None),
                    "values": by_rep,
                }
            ),
        ),
        _row(
            "edit -> searchable p50, full path / incremental (one at a time)",
            f">= {EDIT_SPEEDUP_MIN}",
            speed.get("median"),
            None if speed.get("median") is None else speed["median"] >= EDIT_SPEEDUP_MIN,
            _spread(speed),
        ),
        _row(
            "Prefect DB growth per chapter version, before / now "
            f"(before: {(baseline or {}).get('commit') or 'not measured'})",
            f">= {DB_GROWTH_SHRINK_MIN}",
            None if shrink is None else round(shrink, 2),
            None if shrink is None else shrink >= DB_GROWTH_SHRINK_MIN,
            _spread(
                {
                    "n": len(shrink_reps),
                    "min": min(shrink_reps, default=None),
                    "max": max(shrink_reps, default=None),
                    "values": shrink_reps,
                }
            ),
        ),
        _row(
            "results-topic bytes per chunk, v1 JSON floats / v2 base64",
            f">= {RESULT_BYTES_SHRINK_MIN}",
            rb.get("median"),
            None if rb.get("median") is None else rb["median"] >= RESULT_BYTES_SHRINK_MIN,
            _spread(rb),
        ),
    ]


def _f(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def _st(st: dict[str, Any] | None, digits: int = 2) -> str:
    """``median (min-max)``."""
    if not st or not st.get("n"):
        return "–"
    return (
        f"{_f(st.get('median'), digits)} ({_f(st.get('min'), digits)}-{_f(st.get('max'), digits)})"
    )


def repeats_section(results: dict[str, Any]) -> list[str]:
    """One row per repetition of direct/warm ingest and the sink."""
    reps = results.get("repeats") or []
    if not reps:
        return []
    lines = [
        "## Repetitions (ingest and sink)",
        "",
        "Each repetition runs the direct baseline and the warm pipeline on fresh topics, "
        "in alternating order (A-B, B-A), then the sink comparison. The targets above take "
        "the median over these rows; the spread is their range.",
        "",
        "| rep | order | warm / direct | per CPU-s | sink agent / raw | warm p50 s "
        "| allowance s | warm embed task s | direct embed s | warm minus its embed s "
        "| other CPU-s per chapter, warm / direct |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reps:
        lines.append(
            f"| {r['rep']} | {' then '.join(r['order'])} | {_f(r.get('warm_vs_direct'))} "
            f"| {_f(r.get('warm_vs_direct_cpu'))} | {_f(r.get('sink_agent_vs_raw'))} "
            f"| {_f(r.get('warm_p50_s'))} | {_f(r.get('latency_goal_s'))} "
            f"| {_f(r.get('warm_embed_task_s'))} | {_f(r.get('direct_embed_s'))} "
            f"| {_f(r.get('warm_overhead_s'))} "
            f"| {_f(r.get('warm_other_cpu_per_chapter'))} / "
            f"{_f(r.get('direct_other_cpu_per_chapter'))} |"
        )
    return [*lines, ""]


def edits_section(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    """The edit workload: per pipeline, the database, the results topic."""
    e = results.get("edits")
    if not e:
        return []
    baseline = baseline if baseline is not None else load_baseline()
    p = e.get("pipelines") or {}
    inc, full = p.get("incremental") or {}, p.get("full") or {}
    db = e.get("prefect_db") or {}
    rb = e.get("results_bytes") or {}
    dec = rb.get("decode_ms_per_chunk") or {}
    by_rep = db.get("database_per_100_by_rep") or []
    lines = [
        "## Edit workload: one-paragraph edits, incremental vs full path",
        "",
        f"Chapters indexed first (first-time ingest): {', '.join(e.get('chapters') or [])}. "
        f"Then {e.get('reps')} repetitions, each of {e.get('edits_per_rep_per_pipeline')} "
        "edits per pipeline: every chapter gets a paragraph inserted, replaced and deleted "
        "in its middle half, one edit at a time (each produced after the previous one was "
        "searchable), then one more edit per chapter in a burst. *incremental* is the "
        "default warm pipeline (vectors of unchanged chunk texts reused from the index); "
        "*full* the same with `SCRIBE_REUSE_VECTORS=false`. Both run side by side, fed "
        "one at a time, alternating (A-B, B-A). Searchable: the index holds exactly the "
        "new version's rows. Values are median (min-max) unless marked.",
        "",
        "| | incremental | full |",
        "|---|---:|---:|",
        f"| chunks per chapter version | {_st(inc.get('chunks_per_version'), 0)} "
        f"| {_st(full.get('chunks_per_version'), 0)} |",
        f"| chunks embedded per edit (run artifact) | {_st(inc.get('embedded_per_edit'), 1)} "
        f"| {_st(full.get('embedded_per_edit'), 1)} |",
        f"| chunks embedded per edit, p95 | {_f(_get(inc, 'embedded_per_edit', 'p95'), 1)} "
        f"| {_f(_get(full, 'embedded_per_edit', 'p95'), 1)} |",
        f"| chunks reused per edit | {_st(inc.get('reused_per_edit'), 1)} "
        f"| {_st(full.get('reused_per_edit'), 1)} |",
        f"| chunks embedded per edit, predicted from the chunker | "
        f"{_st(inc.get('expected_embedded_per_edit'), 1)} | – |",
        f"| runner counters over the edits (embedded / reused) | "
        f"{_counters(inc.get('counters'))} | {_counters(full.get('counters'))} |",
        f"| edit -> searchable p50 s, one at a time | {_f(_get(inc, 'latency_one_s', 'median'))} "
        f"| {_f(_get(full, 'latency_one_s', 'median'))} |",
        f"| edit -> searchable p95 s, one at a time | {_f(_get(inc, 'latency_one_s', 'p95'))} "
        f"| {_f(_get(full, 'latency_one_s', 'p95'))} |",
        f"| edit -> searchable p50 s, burst | {_f(_get(inc, 'latency_burst_s', 'median'))} "
        f"| {_f(_get(full, 'latency_burst_s', 'median'))} |",
        f"| edit -> searchable p95 s, burst | {_f(_get(inc, 'latency_burst_s', 'p95'))} "
        f"| {_f(_get(full, 'latency_burst_s', 'p95'))} |",
        f"| p50 one at a time, per repetition | {_list(inc.get('p50_one_by_rep'))} "
        f"| {_list(full.get('p50_one_by_rep'))} |",
        f"| flow run s / embed task s, one at a time | {_run_embed(inc)} | {_run_embed(full)} |",
        f"| produce -> run created / created -> running / finished -> searchable s, one at "
        f"a time | {_around(inc)} | {_around(full)} |",
        f"| flow-run parameters, bytes per run | {_st(inc.get('params_bytes'), 0)} "
        f"| {_st(full.get('params_bytes'), 0)} |",
        "",
        f"Speed-up of edit -> searchable p50 (full / incremental), one at a time: "
        f"{_st(e.get('latency_speedup_one'))} over the repetitions "
        f"{_list(_get(e, 'latency_speedup_one', 'values'))}; in a burst: "
        f"{_st(e.get('latency_speedup_burst'))}.",
        "",
        "**Prefect's database** (PostgreSQL), growth per 100 chapter versions, this run "
        f"(commit {_get(results, 'config', 'commit') or '?'}): whole database "
        f"{_kib(_get(db, 'database_per_100'))} (per repetition "
        f"{_list([None if x is None else round(x / 1024) for x in by_rep])} KiB), "
        f"of which the `flow_run` table {_kib(db.get('flow_run_table_per_100'))} and the "
        f"parameters' stored bytes {_kib(db.get('params_stored_per_100'))} "
        f"(as JSON text {_kib(db.get('params_text_per_100'))}); first-time ingest "
        f"{_kib(db.get('ingest_per_100'))}. The tables that grew most (with indexes and "
        "TOAST), per 100 versions: "
        + ", ".join(f"`{t}` {_kib(v)}" for t, v in (db.get("tables_per_100") or {}).items())
        + ".",
    ]
    if baseline:
        lines += [
            "",
            f"Before the chapter text left the parameters (commit {baseline.get('commit')}, "
            f"{baseline.get('measured_at')}): whole database "
            f"{_kib(baseline.get('database_per_100'))}, `flow_run` "
            f"{_kib(baseline.get('flow_run_table_per_100'))}, parameters as JSON text "
            f"{_kib(baseline.get('params_text_per_100'))}; parameters per run "
            f"{_st(baseline.get('params_bytes_per_run'), 0)} bytes; tables: "
            + ", ".join(
                f"`{t}` {_kib(v)}" for t, v in (baseline.get("tables_per_100") or {}).items()
            )
            + f". Method: {baseline.get('method')}",
        ]
    lines += [
        "",
        f"**Results topic**: {rb.get('messages')} `chapter.embedded` messages of this run "
        f"({rb.get('chunks')} chunks) read back and encoded both ways: v1 (JSON floats, 7 "
        f"decimals) {_f(rb.get('v1_bytes_per_chunk'), 0)} bytes per chunk, v2 (base64 "
        f"float32, as published) {_f(rb.get('v2_bytes_per_chunk'), 0)}; v1 / v2 "
        f"{_st(rb.get('ratio_v1_v2'))} over the repetitions. Of a chunk's bytes its text "
        f"takes {_f(rb.get('text_bytes_per_chunk'), 0)} in both; the vectors alone shrink "
        f"{_st(rb.get('vector_ratio_v1_v2'))}x. Gzipped as the publisher sends them "
        f'(`compression_type="gzip"`, what the broker stores): v1 '
        f"{_f(_get(rb, 'gzip_bytes_per_chunk', 'v1'), 0)}, v2 "
        f"{_f(_get(rb, 'gzip_bytes_per_chunk', 'v2'), 0)} bytes per chunk, v1 / v2 "
        f"{_st(rb.get('gzip_ratio_v1_v2'))}. Decoding (`parse_result`, best "
        f"of 3): v1 {_f(dec.get('v1'), 3)} ms per chunk, v2 {_f(dec.get('v2'), 3)} ms. v1 "
        f"round trips off by more than 1e-6: {rb.get('v1_roundtrip_mismatches')}.",
        "",
    ]
    return lines


def _run_embed(p: dict[str, Any]) -> str:
    run, embed = _get(p, "run_one_s", "median"), _get(p, "embed_task_one_s", "median")
    return f"{_f(run)} / {_f(embed)}"


def _counters(c: dict[str, float] | None) -> str:
    if not c:
        return "–"
    return f"{c.get('embedded', 0):.0f} / {c.get('reused', 0):.0f}"


def _list(values: Any) -> str:
    if not values:
        return "–"
    return "[" + ", ".join("–" if v is None else f"{v:g}" for v in values) + "]"


def _kib(st: Any) -> str:
    if isinstance(st, dict):
        st = st.get("median")
    return "–" if st is None else f"{float(st) / 1024:.0f} KiB"


def _around(p: dict[str, Any]) -> str:
    """Medians of the latency outside the flow run: before it starts and after it ends."""
    keys = ("to_created_one_s", "to_running_one_s", "to_searchable_one_s")
    return " / ".join(_f(_get(p, k, "median")) for k in keys)
