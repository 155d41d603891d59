"""Contract every EventSource adapter must meet: run against the fake and Kafka.

Each ``check_*`` coroutine takes a fresh :class:`Log`: a topic of two partitions that the
check writes to, trims as retention would, and reads through the adapter under test.
``tests/unit/test_event_source_contract.py`` runs them on the in-memory log,
``tests/integration/test_event_source.py`` on the real broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from prefect_bridge.event_source import EventSource
from schemas import EventUnavailable, SourceRef


class Log(Protocol):
    """A topic of two partitions and the adapter reading it."""

    topic: str
    source: EventSource

    async def append(self, partition: int, key: bytes, value: bytes) -> int:
        """Write one message; return its offset."""
        ...

    async def trim(self, partition: int, before: int) -> None:
        """Delete the partition's messages below ``before`` (what retention does)."""
        ...


def _at(log: Log, partition: int, offset: int, read_offset: int | None = None) -> SourceRef:
    return SourceRef(topic=log.topic, partition=partition, offset=offset, read_offset=read_offset)


async def _fill(log: Log) -> dict[tuple[int, int], bytes]:
    sent = {}
    for partition, count in ((0, 3), (1, 2)):
        for i in range(count):
            value = f"p{partition}-m{i}".encode()
            sent[(partition, await log.append(partition, b"k", value))] = value
    return sent


async def check_reads_by_position_in_any_order(log: Log) -> None:
    sent = await _fill(log)
    # Along one partition, back again, across, and the same twice.
    for partition, offset in [(0, 0), (0, 1), (0, 2), (0, 0), (1, 1), (1, 0), (0, 2)]:
        assert await log.source.read(_at(log, partition, offset)) == (
            b"k",
            sent[(partition, offset)],
        )


async def check_a_position_not_yet_written_is_unavailable(log: Log) -> None:
    await _fill(log)
    with pytest.raises(EventUnavailable, match="not in the log") as info:
        await log.source.read(_at(log, 0, 3))
    assert not info.value.retriable


async def check_what_retention_took_is_unavailable_and_the_reader_goes_on(log: Log) -> None:
    sent = await _fill(log)
    await log.trim(0, 2)
    with pytest.raises(EventUnavailable, match="not in the log"):
        await log.source.read(_at(log, 0, 1))
    assert await log.source.read(_at(log, 0, 2)) == (b"k", sent[(0, 2)])
    assert await log.source.read(_at(log, 1, 0)) == (b"k", sent[(1, 0)])


async def check_a_copy_is_read_at_its_own_position(log: Log) -> None:
    """A redriven copy stands at its original position but is read where it is."""
    sent = await _fill(log)
    copy = await log.append(0, b"k", b"the copy")
    await log.trim(0, 2)  # retention took the original at 1
    assert await log.source.read(_at(log, 0, 1, read_offset=copy)) == (b"k", b"the copy")
    assert sent[(0, 1)] != b"the copy"


CONTRACT: list[Callable[[Log], Awaitable[None]]] = [
    check_reads_by_position_in_any_order,
    check_a_position_not_yet_written_is_unavailable,
    check_what_retention_took_is_unavailable_and_the_reader_goes_on,
    check_a_copy_is_read_at_its_own_position,
]
