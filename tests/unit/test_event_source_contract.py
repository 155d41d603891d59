"""The event source contract on the in-memory log (Kafka: tests/integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.event_source_contract import CONTRACT, Log
from tests.fakes import InMemoryEventLog


class FakeLog:
    """The in-memory log behind the contract's :class:`Log`."""

    def __init__(self) -> None:
        self.source = InMemoryEventLog("contract")
        self.topic = "contract"

    async def append(self, partition: int, key: bytes, value: bytes) -> int:
        return self.source.append(key, value, partition).offset

    async def trim(self, partition: int, before: int) -> None:
        self.source.trim(partition, before)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_event_source_contract(check: Callable[[Log], Awaitable[None]]) -> None:
    await check(FakeLog())
