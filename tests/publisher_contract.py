"""Contract every ResultPublisher adapter must meet: run against the fake and Kafka.

Each ``check_*`` coroutine takes a fresh :class:`Published`: the publisher under test and a
way to read back what reached each of its topics (key, value bytes, headers), as a
consumer of those topics would. ``tests/unit/test_publisher_contract.py`` runs them on the
in-memory publisher, ``tests/integration/test_topics.py`` on the real broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from prefect_bridge.publisher import ResultPublisher
from schemas import (
    ChapterEmbedded,
    ChapterProcessingFailed,
    ChapterRemoved,
    ChunkVector,
    ResultTooLarge,
    SourceRef,
    parse_result,
)
from schemas.dead_letters import Headers

#: The largest result message the publisher under test is built to send.
MAX_BYTES = 64 * 1024

Message = tuple[bytes | None, bytes, Headers]


class Published(Protocol):
    """The publisher under test, and what reached its topics so far."""

    publisher: ResultPublisher

    async def results(self) -> list[Message]:
        """Messages on the results topic."""
        ...

    async def dead_letters(self) -> list[Message]:
        """Messages on the dead-letter topic."""
        ...

    async def failures(self) -> list[Message]:
        """Messages on the failures topic."""
        ...


def embedded(novel: str, chunks: int = 2, text: str = "花果山") -> ChapterEmbedded:
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id="c1",
        version=3,
        model="m",
        dimension=4,
        pipeline_version="p",
        source=SourceRef(topic="novel-events", partition=1, offset=7),
        chunks=tuple(
            ChunkVector(chunk_no=i, text=text, vector=(0.5, 0.5, 0.5, 0.5)) for i in range(chunks)
        ),
    )


async def check_results_arrive_in_order_keyed_by_their_novel(p: Published) -> None:
    first = embedded("n1")
    removed = ChapterRemoved(event_id=uuid.uuid4(), novel_id="n2", chapter_id="c9", version=4)
    await p.publisher.publish(first)
    await p.publisher.publish(removed)
    got = await p.results()
    assert [key for key, _, _ in got] == [b"n1", b"n2"]
    assert [parse_result(value) for _, value, _ in got] == [first, removed]


async def check_a_result_over_the_size_limit_is_refused_and_not_sent(p: Published) -> None:
    huge = embedded("n1", chunks=1, text="长" * MAX_BYTES)
    with pytest.raises(ResultTooLarge) as info:
        await p.publisher.publish(huge)
    assert not info.value.retriable
    assert await p.results() == []


async def check_a_dead_letter_keeps_its_key_value_and_reason(p: Published) -> None:
    headers: Headers = [("scribe.error", b"MalformedJSON"), ("scribe.reason", "坏".encode())]
    await p.publisher.dead_letter(b"n1", b"{not json", headers)
    await p.publisher.dead_letter(None, b"no key", [])
    assert await p.dead_letters() == [(b"n1", b"{not json", headers), (None, b"no key", [])]


async def check_a_failure_is_told_keyed_by_its_novel(p: Published) -> None:
    failure = ChapterProcessingFailed(
        source_event_id=uuid.uuid4(), novel_id="n1", chapter_id="c1", version=2, reason="boom"
    )
    await p.publisher.notify_failure(failure)
    [(key, value, _)] = await p.failures()
    assert key == b"n1"
    assert ChapterProcessingFailed.model_validate_json(value) == failure


CONTRACT: list[Callable[[Published], Awaitable[None]]] = [
    check_results_arrive_in_order_keyed_by_their_novel,
    check_a_result_over_the_size_limit_is_refused_and_not_sent,
    check_a_dead_letter_keeps_its_key_value_and_reason,
    check_a_failure_is_told_keyed_by_its_novel,
]
