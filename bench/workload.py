"""The benchmark's input: sample chapters as events, their expected chunk counts, statistics.

Chapters come from the bundled sample (西游记, chapters 1-10), cycled when more are asked
for, each with its own chapter id. The expected number of chunks of a chapter is computed
with the very chunker and tokenizer the flow uses, so "searchable" can be checked by
counting the chapter's rows in Milvus.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from schemas import ChapterWritten, parse_event
from streams.cli import sample_path
from streams.commands.novel_text import ChapterText, chapter_events, split_chapters

TokenCounter = Callable[[str], int]

#: A one-chunk chapter used to warm a pipeline up before anything is measured.
WARMUP_TEXT = "第一段。孙悟空大闹天宫，一个筋斗云去了十万八千里。"


@dataclass(frozen=True)
class BenchChapter:
    """One chapter event ready to produce, with the row count it must end up with."""

    novel_id: str
    chapter_id: str
    key: bytes
    value: bytes
    text: str
    expected_chunks: int

    @property
    def ref(self) -> str:
        """``novel/chapter``: unique across the novels of one bench run."""
        return f"{self.novel_id}/{self.chapter_id}"


def sample_chapters() -> list[ChapterText]:
    """The ten chapters of the bundled sample."""
    return split_chapters(sample_path().read_text(encoding="utf-8"))


def make_chapters(
    novel_id: str, count: int, counter: TokenCounter, *, first: int = 0
) -> list[BenchChapter]:
    """``count`` chapter.created events of ``novel_id``, cycling through the sample.

    ``first`` is the index of the first sample chapter to use (then cycling).
    """
    sample = sample_chapters()
    texts = [sample[(first + i) % len(sample)] for i in range(count)]
    numbered = [ChapterText(i + 1, t.title, t.text) for i, t in enumerate(texts)]
    return [
        _bench_chapter(e.model_dump_json().encode(), counter)
        for e in chapter_events(novel_id, numbered)
    ]


def warmup_chapter(novel_id: str, counter: TokenCounter) -> BenchChapter:
    """A tiny one-chunk chapter for warming a pipeline up."""
    (event,) = chapter_events(novel_id, [ChapterText(1, "warm-up", WARMUP_TEXT)])
    return _bench_chapter(event.model_dump_json().encode(), counter)


def _bench_chapter(value: bytes, counter: TokenCounter) -> BenchChapter:
    event = parse_event(value)  # the text exactly as the flow will see it
    assert isinstance(event, ChapterWritten)
    chunks = chunk_text(event.text, ChunkingPolicy(), counter)
    return BenchChapter(
        novel_id=event.novel_id,
        chapter_id=event.chapter_id,
        key=event.novel_id.encode(),
        value=value,
        text=event.text,
        expected_chunks=len(chunks),
    )


@dataclass
class Clock:
    """Produce and done times of chapters, monotonic (for latency) and wall (for Prefect)."""

    produced: dict[str, float] = field(default_factory=dict)
    produced_wall: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    done_wall: dict[str, float] = field(default_factory=dict)

    def mark_done(self, ref: str) -> None:
        """Record that ``ref`` is searchable (or flushed) now."""
        self.done[ref] = time.monotonic()
        self.done_wall[ref] = time.time()


class Producible(Protocol):
    """Anything :func:`produce` can send: a keyed event value with a unique ref."""

    @property
    def ref(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...


async def produce(
    producer: AIOKafkaProducer, topic: str, chapters: Sequence[Producible], clock: Clock
) -> None:
    """Send the chapters one after the other (acks=all), recording each send time."""
    for ch in chapters:
        clock.produced[ch.ref] = time.monotonic()
        clock.produced_wall[ch.ref] = time.time()
        await producer.send_and_wait(topic, value=ch.value, key=ch.key)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(chapters: Sequence[BenchChapter], clock: Clock) -> dict[str, Any]:
    """Throughput and latency of ``chapters`` from first produce to last done."""
    refs = [c.ref for c in chapters]
    latencies = [clock.done[r] - clock.produced[r] for r in refs]
    chunks = sum(c.expected_chunks for c in chapters)
    wall = max(clock.done[r] for r in refs) - min(clock.produced[r] for r in refs)
    return {
        "chapters": len(refs),
        "chunks": chunks,
        "wall_s": round(wall, 3),
        "chapters_per_s": round(len(refs) / wall, 4) if wall > 0 else None,
        "chunks_per_s": round(chunks / wall, 3) if wall > 0 else None,
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "latency_max_s": round(max(latencies), 3),
        "latencies_s": [round(x, 3) for x in latencies],
    }
