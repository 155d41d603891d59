"""Scenario 6 (``--soak N``): the memory of the whole stack over a long warm-pipeline run.

The warm pipeline (:func:`bench.serving.serving`) gets N short chapters, one chunk each
(:data:`SOAK_CHARS` characters cut from the sample, cycling; :data:`SOAK_NOVELS` novels
so that every partition is used), all produced at once: the chapter agent bounds the flow
runs in flight and stops consuming at the bound. A :class:`SeriesSampler` thread records
the RSS of the runner, the worker and every service (each with its descendants) and the
number of chapters searchable so far; :mod:`bench.soak_report` turns that into growth
figures and a verdict per process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.env import BenchEnv
from bench.memory import KIB_PER_MIB, RssSampler, _descendants, _parents, cpu_delta, status_kib
from bench.serving import serving
from bench.soak_report import Sample, summarize_series
from bench.workload import (
    BenchChapter,
    Clock,
    TokenCounter,
    _bench_chapter,
    produce,
    sample_chapters,
    summarize,
    warmup_chapter,
)
from streams.commands.novel_text import ChapterText, chapter_events

log = logging.getLogger("bench.soak")

SOAK_NOVELS = 8
SOAK_CHARS = 200
#: Seconds between samples (every second for runs under 100 chapters).
SAMPLE_SECONDS = 5.0


def soak_texts(count: int, chars: int = SOAK_CHARS) -> list[str]:
    """``count`` pieces of ``chars`` characters of the sample's chapter bodies, cycling."""
    body = "".join("".join(c.text.split()) for c in sample_chapters())
    return ["".join(body[(i * chars + j) % len(body)] for j in range(chars)) for i in range(count)]


def make_soak_chapters(
    prefix: str, count: int, counter: TokenCounter, novels: int = SOAK_NOVELS
) -> list[BenchChapter]:
    """``count`` one-chunk chapters spread round-robin over ``novels`` novels."""
    texts = soak_texts(count)
    by_novel: dict[int, list[ChapterText]] = {}
    for i, text in enumerate(texts):
        chapters = by_novel.setdefault(i % novels, [])
        chapters.append(ChapterText(len(chapters) + 1, f"soak {i + 1}", text))
    out = [
        _bench_chapter(e.model_dump_json().encode(), counter)
        for k, chapters in by_novel.items()
        for e in chapter_events(f"{prefix}-{k}", chapters)
    ]
    if any(c.expected_chunks != 1 for c in out):
        raise ValueError("a soak chapter is not one chunk: lower SOAK_CHARS")
    # Round-robin over the novels, as the texts were cut.
    return sorted(out, key=lambda c: (c.chapter_id, c.novel_id))


class SeriesSampler:
    """RSS of process trees over time with a progress count, in a daemon thread."""

    def __init__(self, roots: dict[str, int], progress: Callable[[], int], interval: float):
        self.roots = roots
        self.samples: list[Sample] = []
        self._progress = progress
        self._interval = interval
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling (the first sample at once)."""
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then take one last sample."""
        self._stop.set()
        self._thread.join(10)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """One sample: VmRSS and RssAnon summed over each tree, in MiB, and the progress."""
        done = self._progress()
        children = _parents()
        rss: dict[str, float] = {}
        anon: dict[str, float] = {}
        for role, pid in self.roots.items():
            if status_kib(pid, "VmRSS") is None:
                continue
            pids = [pid, *_descendants(pid, children)]
            rss[role] = round(sum(status_kib(p, "VmRSS") or 0 for p in pids) / KIB_PER_MIB, 1)
            anon[role] = round(sum(status_kib(p, "RssAnon") or 0 for p in pids) / KIB_PER_MIB, 1)
        rss["total"] = round(sum(rss.values()), 1)
        anon["total"] = round(sum(anon.values()), 1)
        t = round(time.monotonic() - self._t0, 1)
        self.samples.append({"t_s": t, "done": done, "rss_mib": rss, "anon_mib": anon})


async def run_soak(
    benv: BenchEnv, sampler: RssSampler, counter: TokenCounter, chapters: int
) -> dict[str, Any]:
    """Produce ``chapters`` one-chunk chapters to the warm pipeline; RSS over time."""
    soak = make_soak_chapters(f"soak-{benv.suffix}", chapters, counter)
    interval = SAMPLE_SECONDS if chapters >= 100 else 1.0
    clock, warm_clock = Clock(), Clock()
    async with serving(benv, "soak", sampler, warm=True) as sv:
        assert sv.runner.proc is not None and sv.worker.proc is not None
        topic = sv.settings.topic_events
        warmup = warmup_chapter(f"soak-warmup-{benv.suffix}", counter)
        await produce(sv.producer, topic, [warmup], warm_clock)
        await sv.watcher.wait([warmup], warm_clock, 600, sv.alive)
        roots = {"runner": sv.runner.proc.pid, "worker": sv.worker.proc.pid}
        roots |= {f"service.{name}": pid for name, pid in benv.services().items()}
        series = SeriesSampler(roots, lambda: len(clock.done), interval)
        log.info("soak: %d chapters, sampling every %gs", chapters, interval)
        cpu0 = sampler.cpu_snapshot()
        series.start()
        try:
            await produce(sv.producer, topic, soak, clock)
            await sv.watcher.wait(soak, clock, 300 + 10.0 * chapters, sv.alive, interval=1.0)
        finally:
            series.stop()
        cpu1 = sampler.cpu_snapshot()
    run = {k: v for k, v in summarize(soak, clock).items() if k != "latencies_s"}
    processes = summarize_series(series.samples, chapters)
    for role, p in processes.items():
        log.info(
            "soak %s: %s MiB at 50 %%, %s MiB at 100 %%: %s",
            role,
            p["rss_50pct_mib"],
            p["rss_100pct_mib"],
            p["verdict"],
        )
    return {
        "chapters": chapters,
        "novels": min(SOAK_NOVELS, chapters),
        "chars_per_chapter": SOAK_CHARS,
        "max_in_flight": sv.settings.in_flight_bound,
        "interval_s": interval,
        "run": run,
        "cpu_s": cpu_delta(cpu0, cpu1),
        "processes": processes,
        "samples": series.samples,
        "milestones": {"10pct": max(1, math.ceil(chapters / 10)), "50pct": math.ceil(chapters / 2)},
    }
