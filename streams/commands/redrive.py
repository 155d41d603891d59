"""``scribe dlq redrive``: send dead letters back to the input topic, where they stood."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from schemas import ConfigurationError
from schemas.dead_letters import redrive_headers, storable
from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.commands.dlq import NAMED_SKIPS, Parked, pages
from streams.settings import Settings


@dataclass
class RedriveReport:
    """What a redrive did: how many it sent, how many it left parked (the first named)."""

    sent: int = 0
    skipped: int = 0
    named: list[Parked] = field(default_factory=list)

    def skip(self, parked: Parked) -> None:
        """Count a letter left parked, naming the first ``NAMED_SKIPS``."""
        self.skipped += 1
        if len(self.named) < NAMED_SKIPS:
            self.named.append(parked)

    def lines(self, topic: str) -> list[str]:
        """What to tell the operator."""
        out = []
        if self.skipped:
            positions = ", ".join(f"{p.position} ({p.letter.source})" for p in self.named)
            more = (
                f" and {self.skipped - len(self.named)} more" if self.skipped > NAMED_SKIPS else ""
            )
            out.append(
                f"skipped {self.skipped} dead letters not from the input topic (results the"
                f" sink could not apply; redriving them would only park them again):"
                f" {positions}{more}; see `scribe dlq show POSITION`"
            )
        out.append(f"redrove {self.sent} events to {topic}")
        return out


def not_redrivable(settings: Settings, parked: list[Parked]) -> list[Parked]:
    """Dead letters that did not come from the input topic (a result the sink could not
    parse): sending them to the input topic would only park them again, or worse."""
    return [
        p
        for p in parked
        if p.letter.source is not None and p.letter.source.topic != settings.topic_events
    ]


def _origin_partition(parked: Parked) -> int | None:
    """The partition the message was first logged on (where its position orders it)."""
    source = parked.letter.source
    return source.partition if source is not None else None


async def _send(producer: AIOKafkaProducer, settings: Settings, parked: list[Parked]) -> None:
    """One by one, in the given order (each partition's letters in offset order)."""
    for p in parked:
        value, headers = storable(p.key, p.value, redrive_headers(p.letter))
        await producer.send_and_wait(
            settings.topic_events,
            value=value,
            key=p.key,
            partition=_origin_partition(p),
            headers=headers,
        )


async def redrive(settings: Settings, parked: list[Parked]) -> int:
    """Re-publish the named input-topic dead letters to the input topic, keeping their
    position; a letter of another topic among them refuses them all.

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
    producer = await start_producer(
        KafkaConnection.from_settings(settings), settings.max_result_bytes
    )
    try:
        await _send(producer, settings, parked)
    finally:
        await producer.stop()
    return len(parked)


async def redrive_all(settings: Settings, any_error: bool) -> RedriveReport:
    """``redrive --all``: the retriable letters (every one with ``any_error``) of the input
    topic, sent page by page as the DLQ is read (each partition in offset order); letters
    of other topics are skipped and counted, not a reason to refuse the rest."""
    report = RedriveReport()
    producer = await start_producer(
        KafkaConnection.from_settings(settings), settings.max_result_bytes
    )
    try:
        async with aclosing(pages(settings)) as reading:
            async for page in reading:
                chosen = [p for p in page if any_error or p.letter.retriable]
                foreign = {id(p) for p in not_redrivable(settings, chosen)}
                for p in chosen:
                    if id(p) in foreign:
                        report.skip(p)
                ready = [p for p in chosen if id(p) not in foreign]
                await _send(producer, settings, ready)
                report.sent += len(ready)
    finally:
        await producer.stop()
    return report
