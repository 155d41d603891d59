"""``scribe dlq``: read, show and redrive the dead-letter topic."""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import ConfigurationError, ServiceUnavailable
from schemas.dead_letters import DeadLetter, as_parked
from streams.adapters.kafka.client import partitions_of
from streams.adapters.kafka.connection import KafkaConnection
from streams.settings import Settings


@dataclass(frozen=True)
class Parked:
    """One message of the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    letter: DeadLetter

    @property
    def position(self) -> str:
        """``partition:offset``, the id ``scribe dlq show|redrive`` take."""
        return f"{self.partition}:{self.offset}"


#: Messages per page of :func:`pages` (besides the fetch size that bounds its bytes).
PAGE_RECORDS = 200

#: Skipped positions named in the report of ``redrive --all`` (the rest are counted).
NAMED_SKIPS = 20


async def pages(settings: Settings, read_seconds: float = 60.0) -> AsyncGenerator[list[Parked]]:
    """The DLQ as it stood when reading began, page by page, without a consumer group.

    Memory stays bounded by a page (``PAGE_RECORDS`` messages, at most a fetch's bytes
    per partition). Each page holds each partition's messages in offset order and pages
    follow one another, so every partition is read in offset order; messages parked
    after the start (a redriven letter parked again) are left for the next read.
    """
    kafka = KafkaConnection.from_settings(settings)
    consumer = AIOKafkaConsumer(**kafka.client_config(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(kafka, settings.topic_dlq)
        tps = [TopicPartition(settings.topic_dlq, p) for p in partitions]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + read_seconds
        while remaining:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"could not read the whole DLQ within {read_seconds:.0f}s")
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=PAGE_RECORDS)
            page = [
                Parked(
                    tp.partition,
                    m.offset,
                    m.key,
                    as_parked(m.value, list(m.headers or ())),
                    DeadLetter.from_headers(m.headers),
                )
                for tp, messages in batches.items()
                for m in messages
                if m.offset < ends[tp]
            ]
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if page:
                deadline = time.monotonic() + read_seconds  # progress: a big DLQ may take long
                yield page
    finally:
        await consumer.stop()


def _newest_first_key(p: Parked) -> tuple[str, int, int]:
    return (p.letter.dead_lettered_at or "", p.partition, p.offset)


async def read_all(
    settings: Settings, limit: int | None = None, read_seconds: float = 60.0
) -> list[Parked]:
    """The DLQ oldest first (by the time each was parked); with ``limit``, only the newest
    ``limit``, keeping no more than those while reading."""
    kept: list[tuple[tuple[str, int, int], Parked]] = []
    async with aclosing(pages(settings, read_seconds)) as reading:
        async for page in reading:
            for p in page:
                if not limit:
                    kept.append((_newest_first_key(p), p))
                elif len(kept) < limit:
                    heapq.heappush(kept, (_newest_first_key(p), p))
                elif _newest_first_key(p) > kept[0][0]:
                    heapq.heapreplace(kept, (_newest_first_key(p), p))
    return [p for _, p in sorted(kept, key=lambda kp: kp[0])]


async def find(settings: Settings, positions: Iterable[str]) -> list[Parked]:
    """The messages ``positions`` name (see :func:`select`), keeping only those in memory."""
    wanted = list(positions)
    exact = {tuple(int(x) for x in w.split(":", 1)) for w in wanted if ":" in w}
    bare = {int(w) for w in wanted if ":" not in w}
    found: list[Parked] = []
    async with aclosing(pages(settings)) as reading:
        async for page in reading:
            found += [p for p in page if (p.partition, p.offset) in exact or p.offset in bare]
    return select(found, wanted)


def select(parked: list[Parked], positions: Iterable[str]) -> list[Parked]:
    """Messages by ``partition:offset`` (or a bare offset when it is unambiguous)."""
    chosen = []
    for pos in positions:
        if ":" in pos:
            part, off = (int(x) for x in pos.split(":", 1))
            match = [p for p in parked if (p.partition, p.offset) == (part, off)]
        else:
            match = [p for p in parked if p.offset == int(pos)]
        if len(match) != 1:
            raise ConfigurationError(
                f"{pos!r} names {len(match)} dead letters; use PARTITION:OFFSET from `dlq list`"
            )
        chosen.extend(match)
    return chosen
