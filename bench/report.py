"""The machine description, ``results.json`` and the generated part of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from bench.analysis import chunks_per_cpu_s, remains
from bench.chart import SCENARIOS, render, render_soak
from bench.edit_report import edits_section, repeats_section
from bench.soak_report import soak_section

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"
LATEST_PNG = REPO_ROOT / "bench" / "latest.png"
LATEST_SOAK_PNG = REPO_ROOT / "bench" / "latest-soak.png"
#: Everything after this line in BENCHMARKS.md is hand-written and kept on rewrite.
NOTES_MARK = "<!-- bench: generated above; hand-written notes below are kept on rewrite -->"


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, Python, kernel, load average now."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``results.json``, ``bench.png`` (and ``soak.png``) in ``out``; the charts also to
    bench/latest.png (and bench/latest-soak.png)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    png = out / "bench.png"
    render(results, png)
    shutil.copyfile(png, LATEST_PNG)
    if results.get("soak"):
        render_soak(results["soak"], out / "soak.png")
        shutil.copyfile(out / "soak.png", LATEST_SOAK_PNG)
    return path, png


def _f(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def _spread(sp: dict[str, Any] | None) -> str:
    if not sp or not sp.get("n"):
        return "–"
    return f"{_f(sp.get('min'))}-{_f(sp.get('max'))} (n={sp['n']})"


def _scenario_table(results: dict[str, Any]) -> list[str]:
    scen = results.get("scenarios", {})
    ratios = results.get("ratios", {})
    ratio_of = {
        "direct": (1.0, 1.0),
        "warm": (ratios.get("warm_vs_direct"), ratios.get("warm_vs_direct_cpu")),
        "process": (ratios.get("process_vs_direct"), ratios.get("process_vs_direct_cpu")),
    }
    lines = [
        "| scenario | chapters | chunks | wall s | chapters/s | chunks/s | p50 s (burst) "
        "| p95 s (burst) | p50 s (one at a time) | p95 s (one at a time) | chunks/s vs direct "
        "| chunks per CPU-s | per CPU-s vs direct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        s = scen.get(name)
        if not s:
            continue
        b, i = s["burst"], s.get("isolated") or {}
        lines.append(
            f"| {name} | {b['chapters']} | {b['chunks']} | {_f(b['wall_s'], 1)} "
            f"| {_f(b['chapters_per_s'], 3)} | {_f(b['chunks_per_s'])} "
            f"| {_f(b['latency_p50_s'], 1)} "
            f"| {_f(b['latency_p95_s'], 1)} | {_f(i.get('latency_p50_s'), 1)} "
            f"| {_f(i.get('latency_p95_s'), 1)} | {_f(ratio_of[name][0])}x "
            f"| {_f(chunks_per_cpu_s(scen, name), 3)} | {_f(ratio_of[name][1])}x |"
        )
    return lines


def _cpu_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario, phase | wall s | runner (direct: bench) | worker | Prefect | PostgreSQL "
        "| Kafka | Milvus | bench process | ours | machine busy | other work |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        s = results.get("scenarios", {}).get(name)
        if not s:
            continue
        for phase in ("burst", "isolated"):
            cpu = (s.get("cpu_s") or {}).get(phase)
            wall = (s.get(phase) or {}).get("wall_s")
            if not cpu:
                continue
            runner = cpu.get("bench.process") if name == "direct" else cpu.get(f"{name}.runner")
            bench = None if name == "direct" else cpu.get("bench.process")
            cells = [
                runner,
                cpu.get(f"{name}.worker"),
                cpu.get("service.prefect"),
                cpu.get("service.postgres"),
                cpu.get("service.kafka"),
                cpu.get("service.milvus"),
                bench,
                cpu.get("ours"),
                cpu.get("machine"),
                cpu.get("other"),
            ]
            lines.append(
                f"| {name}, {phase} | {_f(wall, 1)} | " + " | ".join(_f(c, 1) for c in cells) + " |"
            )
    return lines


def _rss_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| process | own peak RSS (VmHWM) MiB | peak RSS of its tree MiB | largest child MiB |",
        "|---|---:|---:|---:|",
    ]
    rows: list[tuple[str, dict[str, float]]] = []
    for name in SCENARIOS:
        for role, peak in (results.get("scenarios", {}).get(name, {}).get("rss") or {}).items():
            rows.append((f"{name}: {role}", peak))
    rows += [(k.replace(".", ": ", 1), v) for k, v in (results.get("services_rss") or {}).items()]
    for label, p in rows:
        lines.append(
            f"| {label} | {_f(p.get('root_hwm_mib'), 0)} | {_f(p.get('tree_peak_mib'), 0)} "
            f"| {_f(p.get('child_peak_mib'), 0)} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The generated part of BENCHMARKS.md."""
    m, c = results["machine"], results["config"]
    sub, sink = results.get("submission") or {}, results.get("sink") or {}
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (see `bench/__init__.py` for what each scenario does); "
        "rerun it to refresh this file. The raw numbers are in `bench/results/results.json`.",
        "",
        f"Last run: {results['started_at']}, command `{results['command']}`, "
        f"{results['duration_s']:.0f} s.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
        f"Python {m['python']}, Linux {m['kernel']}",
        f"- load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')} "
        "(other work on the machine skews every number here)",
        f"- settings: runner limit {c['runner_limit']}, runner poll {c['runner_poll_seconds']} s, "
        f"sink batch {c['sink_batch_size']} / {c['sink_batch_seconds']} s, embedder threads "
        f"{c['embed_threads']}, Prefect on PostgreSQL, ledger on PostgreSQL",
        "",
        "## End to end (same chapters, one stack)",
        "",
        f"Burst: {c['chapters']} chapters of the sample produced at once; one at a time: "
        f"{c['isolated']} chapters, each produced after the previous one was searchable. "
        "Latency is produce -> searchable (direct: produce -> upsert flushed). *Chunks per "
        "CPU-s*: the burst's chunks over the CPU-seconds all of this bench's processes "
        "(services included) spent meanwhile; they share 2 cores, so its ratio to direct "
        "predicts the wall-clock ratio on an otherwise idle machine.",
        "",
        *_scenario_table(results),
        "",
        "## Submission and sink",
        "",
        "Agent / raw is the median over paired, adjacent blocks (10 runs, or one sink batch, "
        "each side, in A-B / B-A order), which other work on the machine skews less than the "
        "totals; the ratio of the totals is in the last column.",
        "",
        "| path | agent | raw | agent / raw | ratio of totals |",
        "|---|---:|---:|---:|---:|",
        f"| flow-run submission, runs/s ({sub.get('runs_each', '–')} each) "
        f"| {_f(sub.get('agent_runs_per_s'), 1)} | {_f(sub.get('raw_runs_per_s'), 1)} "
        f"| {_f(sub.get('ratio_agent_raw'))}x | {_f(sub.get('ratio_agent_raw_totals'))}x |",
        f"| Milvus sink, rows/s ({sink.get('chapters', '–')} chapters x "
        f"{sink.get('chunks_per_chapter', '–')} chunks, batches of {sink.get('batch_size', '–')}) "
        f"| {_f(sink.get('agent_rows_per_s'), 0)} | {_f(sink.get('raw_rows_per_s'), 0)} "
        f"| {_f(sink.get('ratio_agent_raw'))}x | {_f(sink.get('ratio_agent_raw_totals'))}x |",
        "",
        "## CPU seconds spent",
        "",
        "CPU-seconds per process tree while each phase ran (2 cores give 2 CPU-s per "
        "second of wall time). *Other work* is what the machine spent outside this bench's "
        "processes (other programs, the kernel); where it is large, the timings above "
        "measure the machine's load as much as scribe.",
        "",
        *_cpu_table(results),
        "",
        "## Peak memory",
        "",
        *_rss_table(results),
        "",
        "Tree sums count shared pages once per process (PostgreSQL's shared buffers, the "
        "model mapped by several processes), so they overstate the machine's real use.",
        "",
        "## Targets",
        "",
        "Measured: the median over the repetitions where there are several; spread: their "
        "range (min-max, n).",
        "",
        "| target | wanted | measured | spread | met |",
        "|---|---|---:|---|---|",
        *[
            f"| {t['target']} | {t['wanted']} | {_f(t['measured'])} | {_spread(t.get('spread'))} "
            f"| {({True: 'yes', False: 'no', None: 'n/a'})[t['met']]} |"
            for t in results.get("targets", [])
        ],
        "",
        *repeats_section(results),
        *edits_section(results),
        "![bench chart](bench/latest.png)",
        "",
        *soak_section(results),
        "",
        "## What remains and why",
        "",
        *remains(results),
        "",
        NOTES_MARK,
    ]
    return "\n".join(lines) + "\n"


def write_benchmarks(results: dict[str, Any]) -> Path:
    """(Re)write BENCHMARKS.md, keeping the hand-written notes after :data:`NOTES_MARK`."""
    notes = ""
    if BENCHMARKS.exists():
        old = BENCHMARKS.read_text(encoding="utf-8")
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1].lstrip("\n")
    BENCHMARKS.write_text(markdown(results) + ("\n" + notes if notes else ""), encoding="utf-8")
    return BENCHMARKS
