"""``scribe dlq``: read, show and redrive the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import ConfigurationError, ServiceUnavailable
from schemas.dead_letters import DeadLetter, redrive_headers
from streams.adapters.kafka.client import client_config, partitions_of, start_producer
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


async def read_all(
    settings: Settings, limit: int | None = None, read_seconds: float = 60.0
) -> list[Parked]:
    """Every message of the DLQ (oldest first per partition), without a consumer group."""
    consumer = AIOKafkaConsumer(**client_config(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(settings, settings.topic_dlq)
        tps = [TopicPartition(settings.topic_dlq, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Parked] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + read_seconds
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batches.items():
                out.extend(
                    Parked(
                        tp.partition,
                        m.offset,
                        m.key,
                        m.value,
                        DeadLetter.from_headers(list(m.headers)),
                    )
                    for m in messages
                    if m.offset < ends[tp]
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise ServiceUnavailable(f"could not read the whole DLQ within {read_seconds:.0f}s")
        out.sort(key=lambda p: (p.letter.dead_lettered_at or "", p.partition, p.offset))
        return out[-limit:] if limit else out
    finally:
        await consumer.stop()


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


def not_redrivable(settings: Settings, parked: list[Parked]) -> list[Parked]:
    """Dead letters that did not come from the input topic (a result the sink could not
    parse): sending them to the input topic would only park them again, or worse."""
    return [
        p
        for p in parked
        if p.letter.source is not None and p.letter.source.topic != settings.topic_events
    ]


@dataclass(frozen=True)
class RedriveReport:
    """What ``scribe dlq redrive --all`` did: how many it sent, which it left parked."""

    sent: int
    skipped: list[Parked]

    def lines(self, topic: str) -> list[str]:
        """What to tell the operator."""
        out = []
        if self.skipped:
            positions = ", ".join(f"{p.position} ({p.letter.source})" for p in self.skipped[:20])
            more = f" and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
            out.append(
                f"skipped {len(self.skipped)} dead letters not from the input topic (results"
                f" the sink could not apply; redriving them would only park them again):"
                f" {positions}{more}; see `scribe dlq show POSITION`"
            )
        out.append(f"redrove {self.sent} events to {topic}")
        return out


async def redrive_all(settings: Settings, parked: list[Parked], any_error: bool) -> RedriveReport:
    """``redrive --all``: the retriable letters (every one with ``any_error``) of the input
    topic; the letters of other topics are skipped and counted, not a reason to refuse."""
    chosen = [p for p in parked if any_error or p.letter.retriable]
    foreign = not_redrivable(settings, chosen)
    skip = {(p.partition, p.offset) for p in foreign}
    sent = await redrive(settings, [p for p in chosen if (p.partition, p.offset) not in skip])
    return RedriveReport(sent, foreign)


def _origin_partition(parked: Parked) -> int | None:
    """The partition the message was first logged on (where its position orders it)."""
    source = parked.letter.source
    return source.partition if source is not None else None


async def redrive(settings: Settings, parked: list[Parked]) -> int:
    """Re-publish input-topic dead letters to the input topic, keeping their position.

    Each message carries ``scribe.redrive`` = previous + 1 and its original position
    (``scribe.origin.*``), which ordering decisions use: a chapter parked before its
    novel was deleted stays behind that deletion. It goes back to the partition it was
    first logged on, not where its key would put it now (a keyless record anywhere, a
    key after the partition count grew): offsets order messages within one partition
    only, and a copy on another partition would stand at its own, later position.
    """
    foreign = not_redrivable(settings, parked)
    if foreign:
        raise ConfigurationError(
            "not from the input topic, cannot be redriven: "
            + ", ".join(f"{p.position} ({p.letter.source})" for p in foreign)
        )
    producer = await start_producer(settings)
    try:
        for p in parked:
            await producer.send_and_wait(
                settings.topic_events,
                value=p.value,
                key=p.key,
                partition=_origin_partition(p),
                headers=redrive_headers(p.letter),
            )
    finally:
        await producer.stop()
    return len(parked)
