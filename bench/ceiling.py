"""``python -m bench --only ceiling``: what scribe-stream sustains when embedding is free.

Issue 22. One embedded stack (Kafka, PostgreSQL, Prefect, Milvus Lite); per repetition a
fresh pipeline (the warm runner and the worker, on their own topics, alias and
deployment) whose embedder is the OpenAI-compatible one pointed at
:class:`bench.zero_server.ZeroServer` (deterministic vectors at once: bench-only, never a
default). Each repetition measures, side by side on the same stack:

1. **live**: ``N`` novels of ``C`` chapters (``--ceiling N,C,V``), each written ``V``
   times (one flow run per chapter version, as live traffic runs), until every result
   is applied;
2. **replay, batch runs**: ``scribe replay --reembed --from <the live phase's start>``
   (in place, the default ``SCRIBE_REPLAY_BATCH_CHAPTERS``), until its results are applied;
3. **replay, one run per chapter**: the same with ``SCRIBE_REPLAY_BATCH_CHAPTERS=1``;
4. **raw sink**: as many ready-made results of the same size produced straight to the
   results topic, until the worker applied them (Kafka -> worker -> Milvus, no Prefect).

Per phase: chapters/s, chunks/s, where the CPU went (Prefect's server, PostgreSQL, Kafka,
Milvus, the runner, the worker, the replay command), and Prefect's database growth per
chapter. Then the embedding protocol's cost (:mod:`bench.protocol`). Results go to
``bench/results/ceiling-*.json`` and the ceiling section of BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.edit_workload import prefect_db
from bench.edits import prom_value
from bench.env import BenchEnv
from bench.memory import RssSampler, cpu_delta
from bench.serving import Serving, serving
from bench.sink import build_results
from bench.zero_server import MODEL, ZeroServer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.topic_reader import results_end, worker_behind
from streams.cli import sample_path
from streams.commands.novel_text import split_chapters
from streams.settings import Settings

log = logging.getLogger("bench.ceiling")

#: Characters of each chapter's text (a sample chapter's opening): ~4 chunks.
CHARS = 1800


def _events(run: str, novels: int, per_novel: int, versions: int) -> list[tuple[bytes, bytes]]:
    """Every chapter written ``versions`` times, version by version (edits interleaved)."""
    sample = split_chapters(sample_path().read_text(encoding="utf-8"))
    out = []
    for version in range(1, versions + 1):
        for n in range(novels):
            novel = f"{run}-n{n}"
            for c in range(per_novel):
                text = sample[(n + c) % len(sample)].text[:CHARS] + f"（第{version}稿）"
                event = {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "chapter.created" if version == 1 else "chapter.updated",
                    "schema_version": 1,
                    "novel_id": novel,
                    "chapter_id": f"c{c:03d}",
                    "version": version,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "title": f"第{c + 1}回",
                    "text": text,
                }
                out.append((novel.encode(), json.dumps(event, ensure_ascii=False).encode()))
    return out


async def _results_total(settings: Settings) -> int:
    kafka = KafkaConnection.from_settings(settings)
    return sum((await results_end(kafka, settings.topic_embeddings)).values())


async def _applied(settings: Settings, total: int, limit: float, alive: Callable[[], None]) -> None:
    """Until the results topic holds ``total`` messages and the worker applied them all
    (``limit``: seconds before giving up)."""
    deadline = time.monotonic() + limit
    kafka, results = KafkaConnection.from_settings(settings), settings.topic_embeddings
    while True:
        alive()
        ends = await results_end(kafka, results)
        behind = await worker_behind(kafka, settings.app_id, results, ends)
        if sum(ends.values()) >= total and behind == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"results not applied within {limit:.0f}s")
        await asyncio.sleep(0.5)


async def _metric(port: int, name: str) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        return prom_value((await client.get(f"http://127.0.0.1:{port}/metrics")).text, name)


async def _chunks_through_flows(settings: Settings) -> float:
    """Chunks the runner's flows embedded or reused so far."""
    port = settings.runner_metrics_port
    embedded = await _metric(port, "scribe_embedded_chunks_total")
    return embedded + await _metric(port, "scribe_reused_chunks_total")


async def _phase(
    name: str,
    benv: BenchEnv,
    sampler: RssSampler,
    sv: Serving,
    chapters: int,
    body: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Run ``body`` and measure it (see the module docstring)."""
    s = sv.settings
    db0, cpu0 = await prefect_db(benv.postgres_port), sampler.cpu_snapshot()
    rows0 = await _metric(s.worker_metrics_port, "scribe_sink_rows_written_total")
    flowed0 = await _chunks_through_flows(s)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    await body()
    seconds = time.monotonic() - began
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = await _metric(s.worker_metrics_port, "scribe_sink_rows_written_total") - rows0
    flowed = await _chunks_through_flows(s) - flowed0
    chunks = flowed or rows  # the raw sink's chunks go through no flow
    db1, cpu1 = await prefect_db(benv.postgres_port), sampler.cpu_snapshot()
    cpu = cpu_delta(cpu0, cpu1)
    cpu["replay command"] = round(
        kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime, 2
    )
    growth = db1["database"] - db0["database"]
    log.info("%s: %d chapters in %.1fs (%d rows)", name, chapters, seconds, rows)
    return {
        "phase": name,
        "chapters": chapters,
        "seconds": round(seconds, 2),
        "chapters_per_s": round(chapters / seconds, 2),
        "rows_written": int(rows),
        "chunks": int(chunks),
        "chunks_per_s": round(chunks / seconds, 1),
        "cpu_s": cpu,
        "prefect_db_bytes": growth,
        "prefect_db_bytes_per_chapter": round(growth / chapters),
        "flow_runs_added": db1["flow_runs"] - db0["flow_runs"],
        "prefect_tables_grown": {
            k: db1["tables"].get(k, 0) - v
            for k, v in db0["tables"].items()
            if db1["tables"].get(k, 0) - v > 0
        },
    }


async def _replay(
    benv: BenchEnv, env: dict[str, str], since: datetime, batch: int
) -> dict[str, Any]:
    """``scribe replay --reembed --from since`` with ``batch`` chapters per run; its summary."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "replay",
        "--reembed",
        "--from",
        since.isoformat(timespec="seconds"),
        env={**env, "SCRIBE_REPLAY_BATCH_CHAPTERS": str(batch)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"replay failed ({proc.returncode}): {err.decode()[-2000:]}")
    return dict(json.loads(out))


async def run_ceiling_rep(
    benv: BenchEnv, sampler: RssSampler, zero: ZeroServer, rep: int, shape: tuple[int, int, int]
) -> dict[str, Any]:
    """One repetition: live, replay (batch runs), replay (a run per chapter), raw sink."""
    novels, per_novel, versions = shape
    chapters = novels * per_novel
    tag = f"ceiling-r{rep}"
    env, _ = benv.scenario(tag)
    env.update(zero.env())
    async with serving(
        benv, "ceiling", sampler, warm=True, tag=tag, env_overrides=zero.env()
    ) as sv:
        s, topic = sv.settings, sv.settings.topic_events
        warm = _events(f"{tag}-warm", 1, 1, 1)  # the first run loads and connects everything
        await sv.producer.send_and_wait(topic, value=warm[0][1], key=warm[0][0])
        await _applied(s, 1, 600, sv.alive)
        since = datetime.now(UTC) - timedelta(seconds=1)
        events = _events(tag, novels, per_novel, versions)

        async def live() -> None:
            base = await _results_total(s)
            for key, value in events:
                await sv.producer.send_and_wait(topic, value=value, key=key)
            await _applied(s, base + len(events), 60 + 5 * len(events), sv.alive)

        out: dict[str, Any] = {"rep": rep + 1}
        out["live"] = await _phase("live", benv, sampler, sv, len(events), live)
        for name, batch in (("replay_batch", s.replay_batch_chapters), ("replay_per_chapter", 1)):
            summary: dict[str, Any] = {}

            async def replay(batch: int = batch, summary: dict[str, Any] = summary) -> None:
                base = await _results_total(s)
                summary.update(await _replay(benv, env, since, batch))
                await _applied(s, base + chapters, 60 + 5 * chapters, sv.alive)

            out[name] = await _phase(name, benv, sampler, sv, chapters, replay)
            out[name]["summary"] = {
                k: summary.get(k)
                for k in ("runs_submitted", "chapters_submitted", "versions_skipped")
            }
        chunks = max(1, round(out["replay_batch"]["chunks"] / chapters))

        async def raw() -> None:
            base = await _results_total(s)
            for n in range(novels):
                for result in build_results(f"{tag}-raw{n}", per_novel, chunks, n, MODEL):
                    value = result.model_dump_json().encode()
                    await sv.producer.send(
                        s.topic_embeddings, value=value, key=result.novel_id.encode()
                    )
            await sv.producer.flush()
            await _applied(s, base + chapters, 600, sv.alive)

        out["raw_sink"] = await _phase("raw_sink", benv, sampler, sv, chapters, raw)
        out["chunks_per_chapter"] = chunks
    return out
