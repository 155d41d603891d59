"""Scenario 7 (``--edits``): one-paragraph edits, incremental against the full path.

Two warm pipelines (``flows serve --warm`` + ``worker``) run side by side on the same
stack, each on its own topics, alias and deployment: ``incremental`` (the default,
``SCRIBE_REUSE_VECTORS=true``: the flow reuses the vectors the index holds for unchanged
chunk texts) and ``full`` (``SCRIBE_REUSE_VECTORS=false``: every chunk of every version
is embedded, today's full re-embedding path). Both first index the same few sample
chapters (first-time ingest), then get the same chain of edits
(:func:`bench.edits.edit_plan`): per repetition each kind of edit (insert, replace,
delete a paragraph in the middle) on each chapter one at a time, each produced after the
previous one was searchable, then one edit per chapter in a burst. Repetitions alternate
the order of the pipelines (A-B, B-A) to cancel drift; only one pipeline is fed at a
time.

Measured per edit: produce -> searchable (the index holds exactly the new version's rows),
chunks embedded and reused (the run's artifact; the runner's Prometheus counters as a
cross-check), the flow run's parameter bytes. Per segment (a pipeline's edits of one
repetition): the growth of Prefect's PostgreSQL database (``pg_database_size``, the
tables that grew, the ``flow_run`` parameters) per 100 chapter versions. At the end the
results topics are read back: every ``chapter.embedded`` as published (schema version 2,
base64 float32) against the same result as version 1 (JSON floats), bytes per chunk and
decoding time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from aiokafka import AIOKafkaConsumer

from bench.edits import (
    EditStep,
    artifact_counts,
    chunk_bytes,
    donor_paragraphs,
    edit_plan,
    expected_reuse,
    growth_per_100,
    prom_value,
    ratio_stats,
    size_delta,
    stats,
    v1_bytes,
)
from bench.env import BenchEnv
from bench.memory import RssSampler
from bench.pipeline import _diff, _ts, flow_runs, task_times
from bench.serving import Serving, serving
from bench.workload import Clock, TokenCounter, produce, sample_chapters
from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from schemas import ChapterEmbedded, parse_event, parse_result
from streams.adapters.kafka.connection import KafkaConnection
from streams.commands.novel_text import ChapterText, chapter_events

log = logging.getLogger("bench.edits")

#: The two paths compared, and the setting that selects each.
PIPELINES: dict[str, dict[str, str]] = {
    "incremental": {"SCRIBE_REUSE_VECTORS": "true"},
    "full": {"SCRIBE_REUSE_VECTORS": "false"},
}
#: Seconds to wait after a segment before measuring the database: Prefect persists
#: events and the runner ships logs in batches a little after a run ends.
SETTLE_S = 3.0


@dataclass(frozen=True)
class EditEvent:
    """One chapter version to produce, with what the index must hold afterwards."""

    novel_id: str
    chapter_id: str
    version: int
    key: bytes
    value: bytes
    expected_chunks: int
    chunk_texts: tuple[str, ...]
    step: EditStep | None  # None: the chapter's first version (first-time ingest)

    @property
    def ref(self) -> str:
        """``novel/chapter@vN``: unique per version."""
        return f"{self.novel_id}/{self.chapter_id}@v{self.version}"


def make_event(
    novel_id: str,
    number: int,
    title: str,
    text: str,
    version: int,
    counter: TokenCounter,
    step: EditStep | None,
) -> EditEvent:
    """A chapter.created (version 1) or chapter.updated event and its expected chunks."""
    (event,) = chapter_events(novel_id, [ChapterText(number, title, text)], version=version)
    value = event.model_dump_json().encode()
    parsed = parse_event(value)  # the text exactly as the flow will see it
    chunks = chunk_text(getattr(parsed, "text", text), ChunkingPolicy(), counter)
    return EditEvent(
        novel_id=event.novel_id,
        chapter_id=event.chapter_id,
        version=version,
        key=event.novel_id.encode(),
        value=value,
        expected_chunks=len(chunks),
        chunk_texts=tuple(c.text for c in chunks),
        step=step,
    )


async def prefect_db(port: int) -> dict[str, Any]:
    """Sizes in Prefect's PostgreSQL database: the whole database, each table (with its
    indexes and TOAST), and the ``flow_run`` rows and their parameters."""
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="prefect")
    try:
        db = await conn.fetchval("SELECT pg_database_size(current_database())")
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS size FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public'"
        )
        runs = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(pg_column_size(parameters)), 0) AS stored, "
            "coalesce(sum(octet_length(parameters::text)), 0) AS text FROM flow_run"
        )
    finally:
        await conn.close()
    return {
        "database": int(db),
        "tables": {str(r["relname"]): int(r["size"]) for r in rows},
        "flow_runs": int(runs["n"]),
        "params_stored": int(runs["stored"]),
        "params_text": int(runs["text"]),
    }


def db_growth(before: dict[str, Any], after: dict[str, Any], versions: int) -> dict[str, Any]:
    """Growth between two :func:`prefect_db` snapshots over ``versions`` chapter versions."""
    return {
        "versions": versions,
        "database_bytes": after["database"] - before["database"],
        "database_per_100": growth_per_100(before["database"], after["database"], versions),
        "flow_run_table_per_100": growth_per_100(
            before["tables"].get("flow_run"), after["tables"].get("flow_run"), versions
        ),
        "params_stored_per_100": growth_per_100(
            before["params_stored"], after["params_stored"], versions
        ),
        "params_text_per_100": growth_per_100(
            before["params_text"], after["params_text"], versions
        ),
        "flow_runs_added": after["flow_runs"] - before["flow_runs"],
        "tables_grown": size_delta(before["tables"], after["tables"]),
    }


async def runner_counters(port: int) -> dict[str, float] | None:
    """``scribe_embedded_chunks_total`` and ``scribe_reused_chunks_total`` of a runner."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    return {
        "embedded": prom_value(text, "scribe_embedded_chunks_total"),
        "reused": prom_value(text, "scribe_reused_chunks_total"),
    }


def artifacts(prefect_url: str, run_ids: list[str]) -> dict[str, str]:
    """Flow run id -> the markdown of its (last) artifact."""
    out: dict[str, str] = {}
    for i in range(0, len(run_ids), 100):
        body = {"artifacts": {"flow_run_id": {"any_": run_ids[i : i + 100]}}, "limit": 200}
        response = httpx.post(f"{prefect_url}/artifacts/filter", json=body, timeout=30)
        response.raise_for_status()
        for a in sorted(response.json(), key=lambda a: str(a.get("created"))):
            if a.get("flow_run_id"):
                out[str(a["flow_run_id"])] = str(a.get("data") or "")
    return out


async def read_results(settings: Any, idle_s: float = 3.0) -> list[bytes]:
    """Every message value of the scenario's results topic, from the beginning."""
    consumer = AIOKafkaConsumer(
        settings.topic_embeddings,
        **KafkaConnection.from_settings(settings).client_config(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        end: dict[Any, int] | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            for msgs in batch.values():
                values += [m.value for m in msgs if m.value is not None]
            parts = consumer.assignment()
            if parts and end is None:
                end = await consumer.end_offsets(list(parts))
            if end is not None and all(
                await asyncio.gather(*[_reached(consumer, tp, off) for tp, off in end.items()])
            ):
                break
    finally:
        await consumer.stop()
    return values


async def _reached(consumer: AIOKafkaConsumer, tp: Any, offset: int) -> bool:
    position: int = await consumer.position(tp)
    return position >= offset


def result_bytes(values: Sequence[bytes], rep_of: dict[tuple[str, int], int]) -> dict[str, Any]:
    """Bytes per chunk of the published results (v2) against the same results as v1, per
    repetition (``rep_of``: (chapter ref, version) -> repetition; first versions: -1), and
    the time to decode each form (best of 3 rounds, the sink's ``parse_result``)."""
    per_rep: dict[int, dict[str, int]] = {}
    v1_all: list[bytes] = []
    v2_all: list[bytes] = []
    mismatched = 0
    for raw in values:
        result = parse_result(raw)
        if not isinstance(result, ChapterEmbedded):
            continue
        old = v1_bytes(result)
        back = parse_result(old)
        assert isinstance(back, ChapterEmbedded)
        if any(
            max(abs(a - b) for a, b in zip(x.vector, y.vector, strict=True)) > 1e-6
            for x, y in zip(result.chunks, back.chunks, strict=True)
        ):
            mismatched += 1
        rep = rep_of.get((f"{result.novel_id}/{result.chapter_id}", result.version), -1)
        acc = per_rep.setdefault(
            rep,
            {
                "messages": 0,
                "chunks": 0,
                "v1": 0,
                "v2": 0,
                "text": 0,
                "v1_vector": 0,
                "v2_vector": 0,
            },
        )
        for part, size in chunk_bytes(result).items():
            acc[part] += size
        # what the broker stores: the publisher gzips its batches (one result per batch)
        acc["v1_gzip"] = acc.get("v1_gzip", 0) + len(gzip.compress(old, 6))
        acc["v2_gzip"] = acc.get("v2_gzip", 0) + len(gzip.compress(raw, 6))
        acc["messages"] += 1
        acc["chunks"] += len(result.chunks)
        acc["v1"] += len(old)
        acc["v2"] += len(raw)
        v1_all.append(old)
        v2_all.append(raw)
    chunks = sum(a["chunks"] for a in per_rep.values())
    v1_total = sum(a["v1"] for a in per_rep.values())
    v2_total = sum(a["v2"] for a in per_rep.values())
    edit_reps = sorted(r for r in per_rep if r >= 0)
    return {
        "messages": len(v2_all),
        "chunks": chunks,
        "v1_bytes_per_chunk": round(v1_total / chunks, 1) if chunks else None,
        "v2_bytes_per_chunk": round(v2_total / chunks, 1) if chunks else None,
        "per_rep": {str(r): a for r, a in sorted(per_rep.items())},
        "ratio_v1_v2": ratio_stats([(per_rep[r]["v1"], per_rep[r]["v2"]) for r in edit_reps]),
        "gzip_bytes_per_chunk": {
            form: round(sum(a[f"{form}_gzip"] for a in per_rep.values()) / chunks, 1)
            if chunks
            else None
            for form in ("v1", "v2")
        },
        "gzip_ratio_v1_v2": ratio_stats(
            [(per_rep[r]["v1_gzip"], per_rep[r]["v2_gzip"]) for r in edit_reps]
        ),
        "vector_ratio_v1_v2": ratio_stats(
            [(per_rep[r]["v1_vector"], per_rep[r]["v2_vector"]) for r in edit_reps]
        ),
        "text_bytes_per_chunk": round(sum(a["text"] for a in per_rep.values()) / chunks, 1)
        if chunks
        else None,
        "v1_roundtrip_mismatches": mismatched,
        "decode_ms_per_chunk": {
            "v1": _decode_ms(v1_all, chunks),
            "v2": _decode_ms(v2_all, chunks),
        },
    }


def _decode_ms(values: list[bytes], chunks: int) -> float | None:
    if not values or not chunks:
        return None
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for v in values:
            parse_result(v)
        best = min(best, time.perf_counter() - t0)
    return round(1000 * best / chunks, 4)


async def _segment(
    name: str,
    sv: Serving,
    benv: BenchEnv,
    events: Sequence[EditEvent],
    clock: Clock,
    burst: bool,
    per_chapter_s: float,
) -> dict[str, Any]:
    """Produce ``events`` (one at a time, or all at once), wait until searchable; measure
    the database and the runner's counters around it."""
    db0 = await prefect_db(benv.postgres_port)
    m0 = await runner_counters(sv.settings.runner_metrics_port)
    topic = sv.settings.topic_events
    if burst:
        await produce(sv.producer, topic, events, clock)
        await sv.watcher.wait_versions(events, clock, 120 + per_chapter_s * len(events), sv.alive)
    else:
        for ev in events:
            await produce(sv.producer, topic, [ev], clock)
            await sv.watcher.wait_versions([ev], clock, 120 + per_chapter_s, sv.alive)
    await asyncio.sleep(SETTLE_S)
    db1 = await prefect_db(benv.postgres_port)
    m1 = await runner_counters(sv.settings.runner_metrics_port)
    counters = (
        {k: m1[k] - m0[k] for k in m1} if m0 is not None and m1 is not None else None
    )  # the runner's own count of the segment's chunks
    log.info("edits %s: %d versions searchable", name, len(events))
    return {"versions": len(events), "db": db_growth(db0, db1, len(events)), "counters": counters}


async def run_edits(
    benv: BenchEnv,
    sampler: RssSampler,
    counter: TokenCounter,
    *,
    reps: int,
    chapters: int,
    first: int = 2,
    timeout_per_chapter: float = 120.0,
) -> dict[str, Any]:
    """The edit workload on both pipelines; see the module docstring."""
    sample = sample_chapters()
    bases = [sample[(first + i) % len(sample)] for i in range(chapters)]
    others = [c.text for c in sample if c not in bases] or [c.text for c in sample]
    plan = edit_plan([b.text for b in bases], donor_paragraphs(others), reps)

    events: dict[str, list[EditEvent]] = {}
    by_step: dict[str, dict[EditStep, EditEvent]] = {}
    for p in PIPELINES:
        novel = f"edits-{p}-{benv.suffix}"
        events[p] = [
            make_event(novel, i + 1, b.title, b.text, 1, counter, None) for i, b in enumerate(bases)
        ]
        by_step[p] = {
            s: make_event(
                novel, s.chapter + 1, bases[s.chapter].title, s.text, s.version, counter, s
            )
            for r in plan
            for s in r.steps
        }
    clock = Clock()
    segments: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        svs: dict[str, Serving] = {}
        for p, env in PIPELINES.items():
            svs[p] = await stack.enter_async_context(
                serving(benv, f"edits-{p}", sampler, warm=True, env_overrides=env)
            )
        for p, sv in svs.items():  # first-time ingest, one pipeline after the other
            seg = await _segment(p, sv, benv, events[p], clock, True, 600)
            segments.append({"pipeline": p, "rep": -1, "phase": "ingest", **seg})
        for rep, rep_plan in enumerate(plan):
            order = list(PIPELINES) if rep % 2 == 0 else list(reversed(PIPELINES))
            for p in order:
                for phase, steps in (("one", rep_plan.one), ("burst", rep_plan.burst)):
                    evs = [by_step[p][s] for s in steps]
                    seg = await _segment(
                        f"{p} rep {rep + 1} {phase}",
                        svs[p],
                        benv,
                        evs,
                        clock,
                        phase == "burst",
                        timeout_per_chapter,
                    )
                    segments.append({"pipeline": p, "rep": rep, "phase": phase, **seg})
        settings = {p: sv.settings for p, sv in svs.items()}
        values = {p: await read_results(settings[p]) for p in PIPELINES}
    rows = _edit_rows(benv, settings, events, by_step, clock)
    rep_of = {
        (f"{ev.novel_id}/{ev.chapter_id}", ev.version): s.rep
        for p in PIPELINES
        for s, ev in by_step[p].items()
    }
    return summarize_edits(
        rows,
        segments,
        result_bytes([v for p in PIPELINES for v in values[p]], rep_of),
        reps=reps,
        chapters=[f"{b.number}: {b.title}" for b in bases],
        settings={p: settings[p].topic_events for p in PIPELINES},
    )


def _edit_rows(
    benv: BenchEnv,
    settings: dict[str, Any],
    events: dict[str, list[EditEvent]],
    by_step: dict[str, dict[EditStep, EditEvent]],
    clock: Clock,
) -> list[dict[str, Any]]:
    """One row per chapter version produced: latency, counts, the run's parts."""
    out: list[dict[str, Any]] = []
    for p in PIPELINES:
        prefect = settings[p].prefect_url
        novel = events[p][0].novel_id
        runs = {r["name"]: r for r in flow_runs(prefect, novel)}
        ids = [str(r["id"]) for r in runs.values()]
        tasks = task_times(prefect, ids)
        arts = artifacts(prefect, ids)
        previous = {ev.chapter_id: ev.chunk_texts for ev in events[p]}
        ordered = [*events[p], *sorted(by_step[p].values(), key=lambda e: (e.version, e.ref))]
        for ev in ordered:
            run = runs.get(f"{ev.novel_id}/{ev.chapter_id}@v{ev.version}") or {}
            counts = artifact_counts(arts.get(str(run.get("id")), ""))
            exp_embedded, exp_reused = (
                (ev.expected_chunks, 0)
                if ev.step is None
                else expected_reuse(previous[ev.chapter_id], ev.chunk_texts)
            )
            previous[ev.chapter_id] = ev.chunk_texts
            done, produced = clock.done.get(ev.ref), clock.produced.get(ev.ref)
            out.append(
                {
                    "pipeline": p,
                    "rep": None if ev.step is None else ev.step.rep,
                    "phase": "ingest" if ev.step is None else ev.step.phase,
                    "kind": None if ev.step is None else ev.step.kind,
                    "ref": ev.ref,
                    "chunks": ev.expected_chunks,
                    "expected_embedded": exp_embedded,
                    "expected_reused": exp_reused,
                    "reused": None if counts is None else counts[0],
                    "embedded": None if counts is None else counts[1],
                    "latency_s": None
                    if done is None or produced is None
                    else round(done - produced, 3),
                    "run_s": _span(run.get("start_time"), run.get("end_time")),
                    "to_created_s": _diff(_ts(run.get("created")), clock.produced_wall.get(ev.ref)),
                    "to_running_s": _span(run.get("created"), run.get("start_time")),
                    "to_searchable_s": _diff(clock.done_wall.get(ev.ref), _ts(run.get("end_time"))),
                    "embed_task_s": tasks.get((str(run.get("id")), "embed")),
                    "params_bytes": len(
                        json.dumps(run.get("parameters") or {}, ensure_ascii=False).encode()
                    )
                    if run
                    else None,
                    "state": run.get("state_type"),
                }
            )
    return out


def _span(start: str | None, end: str | None) -> float | None:
    return _diff(_ts(end), _ts(start))


def summarize_edits(
    rows: list[dict[str, Any]],
    segments: list[dict[str, Any]],
    results_bytes: dict[str, Any],
    *,
    reps: int,
    chapters: list[str],
    settings: dict[str, str],
) -> dict[str, Any]:
    """The numbers the report shows; ``rows`` and ``segments`` are kept for the record."""
    edits = [r for r in rows if r["phase"] != "ingest"]

    def of(p: str, phase: str | None = None, rep: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in edits
            if r["pipeline"] == p
            and (phase is None or r["phase"] == phase)
            and (rep is None or r["rep"] == rep)
        ]

    pipelines: dict[str, Any] = {}
    for p in PIPELINES:
        pipelines[p] = {
            "embedded_per_edit": stats([r["embedded"] for r in of(p)]),
            "reused_per_edit": stats([r["reused"] for r in of(p)]),
            "expected_embedded_per_edit": stats([r["expected_embedded"] for r in of(p)]),
            "chunks_per_version": stats([r["chunks"] for r in of(p)]),
            "latency_one_s": stats([r["latency_s"] for r in of(p, "one")]),
            "latency_burst_s": stats([r["latency_s"] for r in of(p, "burst")]),
            "run_one_s": stats([r["run_s"] for r in of(p, "one")]),
            "to_created_one_s": stats([r.get("to_created_s") for r in of(p, "one")]),
            "to_running_one_s": stats([r.get("to_running_s") for r in of(p, "one")]),
            "to_searchable_one_s": stats([r.get("to_searchable_s") for r in of(p, "one")]),
            "embed_task_one_s": stats([r["embed_task_s"] for r in of(p, "one")]),
            "params_bytes": stats([r["params_bytes"] for r in rows if r["pipeline"] == p]),
            "by_kind_embedded": {
                k: stats([r["embedded"] for r in of(p) if r["kind"] == k])
                for k in ("insert", "replace", "delete")
            },
            "p50_one_by_rep": [
                stats([r["latency_s"] for r in of(p, "one", i)])["median"] for i in range(reps)
            ],
            "p50_burst_by_rep": [
                stats([r["latency_s"] for r in of(p, "burst", i)])["median"] for i in range(reps)
            ],
            "embedded_median_by_rep": [
                stats([r["embedded"] for r in of(p, rep=i)])["median"] for i in range(reps)
            ],
            "counters": _sum_counters(
                [s for s in segments if s["pipeline"] == p and s["phase"] != "ingest"]
            ),
            "states": _count(r["state"] for r in rows if r["pipeline"] == p),
        }
    inc, full = pipelines["incremental"], pipelines["full"]
    edit_segments = [s for s in segments if s["phase"] != "ingest"]
    db_by_rep = []
    for i in range(reps):
        segs = [s for s in edit_segments if s["rep"] == i]
        versions = sum(s["versions"] for s in segs)
        grown = sum(s["db"]["database_bytes"] for s in segs)
        db_by_rep.append(grown * 100.0 / versions if versions else None)
    return {
        "reps": reps,
        "chapters": chapters,
        "topics": settings,
        "edits_per_rep_per_pipeline": len(of("incremental", rep=0)),
        "pipelines": pipelines,
        "latency_speedup_one": ratio_stats(
            list(zip(full["p50_one_by_rep"], inc["p50_one_by_rep"], strict=True))
        ),
        "latency_speedup_burst": ratio_stats(
            list(zip(full["p50_burst_by_rep"], inc["p50_burst_by_rep"], strict=True))
        ),
        "prefect_db": {
            "database_per_100_by_rep": [None if x is None else round(x) for x in db_by_rep],
            "database_per_100": stats(db_by_rep, 0),
            "segments_per_100": stats([s["db"]["database_per_100"] for s in edit_segments], 0),
            "flow_run_table_per_100": stats(
                [s["db"]["flow_run_table_per_100"] for s in edit_segments], 0
            ),
            "params_stored_per_100": stats(
                [s["db"]["params_stored_per_100"] for s in edit_segments], 0
            ),
            "params_text_per_100": stats(
                [s["db"]["params_text_per_100"] for s in edit_segments], 0
            ),
            "tables_per_100": _tables_per_100(edit_segments),
            "ingest_per_100": stats(
                [s["db"]["database_per_100"] for s in segments if s["phase"] == "ingest"], 0
            ),
        },
        "results_bytes": results_bytes,
        "rows": rows,
        "segments": segments,
    }


def _tables_per_100(segments: list[dict[str, Any]], top: int = 8) -> dict[str, int]:
    """The tables that grew the most over the edit segments, bytes per 100 versions."""
    versions = sum(s["versions"] for s in segments)
    grown: dict[str, int] = {}
    for s in segments:
        for table, size in s["db"]["tables_grown"].items():
            grown[table] = grown.get(table, 0) + size
    if not versions:
        return {}
    ordered = sorted(grown.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v * 100 / versions) for k, v in ordered}


def _sum_counters(segments: list[dict[str, Any]]) -> dict[str, float] | None:
    if any(s["counters"] is None for s in segments):
        return None
    out: dict[str, float] = {}
    for s in segments:
        for k, v in s["counters"].items():
            out[k] = out.get(k, 0.0) + v
    return out


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
