"""Scenarios 2 and 3: the whole scribe-stream pipeline, warm runner or process worker.

``python -m streams.cli flows serve [--warm]`` and ``python -m streams.cli worker`` run as
child processes (like the integration tests) on the scenario's own topics, consumer
group, alias, deployment and work pool. Latency is produce -> searchable: the chapter's
expected rows are visible to a Milvus query. For the chapters sent one at a time the
Prefect run records split it up: produce -> run created (Faust + chapter agent), created
-> running (runner pick-up), running -> finished (the flow), finished -> searchable
(results topic, result agent, flush).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from bench.env import BenchEnv
from bench.memory import RssSampler, cpu_delta
from bench.serving import serving
from bench.workload import BenchChapter, Clock, produce, summarize

log = logging.getLogger("bench.pipeline")


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def flow_runs(prefect_url: str, novel_id: str) -> list[dict[str, Any]]:
    """The flow runs of a novel (by its ``novel:<id>`` tag), from the REST API."""
    body = {"flow_runs": {"tags": {"all_": [f"novel:{novel_id}"]}}, "limit": 200}
    response = httpx.post(f"{prefect_url}/flow_runs/filter", json=body, timeout=30)
    response.raise_for_status()
    return list(response.json())


def task_spans(prefect_url: str, run_ids: list[str]) -> dict[tuple[str, str], tuple[float, float]]:
    """(flow run id, task name) -> (start, end) wall time of the task run (the last try)."""
    body = {"flow_runs": {"id": {"any_": run_ids}}, "limit": 200}
    response = httpx.post(f"{prefect_url}/task_runs/filter", json=body, timeout=30)
    response.raise_for_status()
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for t in response.json():
        start, end = _ts(t.get("start_time")), _ts(t.get("end_time"))
        if start is not None and end is not None:
            out[(str(t["flow_run_id"]), str(t["name"]).rsplit("-", 1)[0])] = (start, end)
    return out


def task_times(prefect_url: str, run_ids: list[str]) -> dict[tuple[str, str], float]:
    """(flow run id, task name) -> seconds the task run took (the last try)."""
    return {
        key: round(end - start, 3) for key, (start, end) in task_spans(prefect_url, run_ids).items()
    }


#: The flow's task runs, in the order the flow runs them.
FLOW_TASKS = ("read event", "chunk", "embed", "publish")


def flow_parts(
    start: float | None, end: float | None, spans: dict[str, tuple[float, float]]
) -> dict[str, float | None]:
    """Where a flow run's time went: each task run and the gaps before, between and after.

    ``gap_before_<task>``: from the previous task's end (or the run's start) to this task's
    start (flow-body work such as the index lookup before ``embed``, plus Prefect's task
    run creation); ``gap_after``: from the last task's end to the run's end (logging, the
    artifact, the final state).
    """
    out: dict[str, float | None] = {}
    previous = start
    for name in FLOW_TASKS:
        span = spans.get(name)
        key = name.replace(" ", "_")
        out[f"{key}_task_s"] = None if span is None else round(span[1] - span[0], 3)
        out[f"gap_before_{key}_s"] = None if span is None else _diff(span[0], previous)
        if span is not None:
            previous = span[1]
    out["gap_after_s"] = _diff(end, previous)
    return out


def breakdown(
    prefect_url: str, chapters: Sequence[BenchChapter], clock: Clock
) -> list[dict[str, Any]]:
    """Per chapter: where the produce -> searchable time went, from Prefect's timestamps."""
    out: list[dict[str, Any]] = []
    for novel in sorted({c.novel_id for c in chapters}):
        runs = {r["name"]: r for r in flow_runs(prefect_url, novel)}
        spans = task_spans(prefect_url, [r["id"] for r in runs.values()])
        for ch in (c for c in chapters if c.novel_id == novel):
            run = runs.get(f"{ch.novel_id}/{ch.chapter_id}@v1")
            if run is None:
                continue
            created, start, end = (
                _ts(run.get("created")),
                _ts(run.get("start_time")),
                _ts(run.get("end_time")),
            )
            produced, done = clock.produced_wall[ch.ref], clock.done_wall.get(ch.ref)
            mine = {name: span for (rid, name), span in spans.items() if rid == run["id"]}
            parts = flow_parts(start, end, mine)
            latency, embed = _diff(done, produced), parts["embed_task_s"]
            out.append(
                {
                    "chapter": ch.ref,
                    "state": run.get("state_type"),
                    "run_count": run.get("run_count"),
                    "infrastructure_pid": run.get("infrastructure_pid"),
                    "to_created_s": _diff(created, produced),
                    "to_running_s": _diff(start, created),
                    "run_s": _diff(end, start),
                    **parts,
                    "to_searchable_s": _diff(done, end),
                    "latency_s": latency,
                    "overhead_s": _diff(latency, embed),
                }
            )
    return out


def _diff(later: float | None, earlier: float | None) -> float | None:
    return round(later - earlier, 3) if later is not None and earlier is not None else None


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarize_breakdown(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median of each part of the latency over the chapters."""
    keys = (
        "to_created_s",
        "to_running_s",
        "run_s",
        "embed_task_s",
        *(f"{t.replace(' ', '_')}_task_s" for t in FLOW_TASKS if t != "embed"),
        *(f"gap_before_{t.replace(' ', '_')}_s" for t in FLOW_TASKS),
        "gap_after_s",
        "to_searchable_s",
        "latency_s",
        "overhead_s",
    )
    out: dict[str, float | None] = {}
    for k in keys:
        median = _median([r[k] for r in rows if r[k] is not None])
        out[k] = None if median is None else round(median, 3)
    return out


async def run_pipeline(
    benv: BenchEnv,
    mode: str,
    sampler: RssSampler,
    warmup: BenchChapter,
    burst: Sequence[BenchChapter],
    isolated: Sequence[BenchChapter],
    timeout_per_chapter: float,
    tag: str | None = None,
) -> dict[str, Any]:
    """One scenario (``mode`` is ``warm`` or ``process``); every child stopped at the end.

    ``tag`` (default ``mode``) names its topics, alias and deployment: a repetition's own.
    """
    clock = Clock()
    async with serving(benv, mode, sampler, warm=mode == "warm", tag=tag) as sv:
        settings, topic = sv.settings, sv.settings.topic_events
        await produce(sv.producer, topic, [warmup], clock)
        await sv.watcher.wait([warmup], clock, 600, sv.alive)
        warm_up_s = clock.done[warmup.ref] - clock.produced[warmup.ref]
        log.info(
            "%s: first chapter searchable after %.1fs; burst of %d", mode, warm_up_s, len(burst)
        )
        cpu0 = sampler.cpu_snapshot()
        await produce(sv.producer, topic, burst, clock)
        await sv.watcher.wait(burst, clock, 120 + timeout_per_chapter * len(burst), sv.alive)
        cpu1 = sampler.cpu_snapshot()
        for ch in isolated:
            await produce(sv.producer, topic, [ch], clock)
            await sv.watcher.wait([ch], clock, 120 + timeout_per_chapter, sv.alive)
        cpu2 = sampler.cpu_snapshot()
        parts = breakdown(settings.prefect_url, [*burst, *isolated], clock)
    iso_refs = {c.ref for c in isolated}
    iso_parts = [p for p in parts if p["chapter"] in iso_refs]
    peaks = sampler.peaks()
    return {
        "name": mode,
        "first_chapter_s": round(warm_up_s, 3),
        "burst": summarize(burst, clock),
        "isolated": summarize(isolated, clock) if isolated else None,
        "isolated_breakdown": summarize_breakdown(iso_parts),
        "runs": parts,
        "run_states": _states(parts),
        "cpu_s": {"burst": cpu_delta(cpu0, cpu1), "isolated": cpu_delta(cpu1, cpu2)},
        "rss": {k.split(".", 1)[1]: v for k, v in peaks.items() if k.startswith(mode + ".")},
        "settings": {
            "topic_events": settings.topic_events,
            "milvus_collection": settings.milvus_collection,
            "deployment": settings.deployment,
            "runner_limit": settings.runner_limit,
            "runner_poll_seconds": settings.runner_poll_seconds,
        },
    }


def _states(parts: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parts:
        out[str(p["state"])] = out.get(str(p["state"]), 0) + 1
    return out
