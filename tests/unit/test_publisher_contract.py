"""The result publisher contract on the in-memory publisher (Kafka: tests/integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from prefect_bridge.publisher import encode_result
from tests.fakes import InMemoryPublisher
from tests.publisher_contract import CONTRACT, MAX_BYTES, Message, Published


class FakePublished:
    """The in-memory publisher, read back as Kafka consumers would see its messages."""

    def __init__(self) -> None:
        self.publisher = InMemoryPublisher(max_bytes=MAX_BYTES)

    async def results(self) -> list[Message]:
        return [(*encode_result(r), []) for r in self.publisher.published]

    async def dead_letters(self) -> list[Message]:
        return [(k, v, list(h)) for k, v, h in self.publisher.dead_letters]

    async def failures(self) -> list[Message]:
        return [
            (f.novel_id.encode(), f.model_dump_json().encode(), []) for f in self.publisher.failures
        ]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_publisher_contract(check: Callable[[Published], Awaitable[None]]) -> None:
    await check(FakePublished())
