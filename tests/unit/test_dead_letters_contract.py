"""The dead-letters contract on the in-memory DLQ (Kafka: tests/integration/test_topics.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from schemas.dead_letters import DeadLetter, error_headers
from tests.dead_letters_contract import CONTRACT, Letter, Parking
from tests.fakes import InMemoryDeadLetters


class FakeParking:
    """The fake DLQ, read back through the headers the real writer would send."""

    def __init__(self) -> None:
        self.dead_letters = InMemoryDeadLetters()

    async def letters(self) -> list[Letter]:
        return [
            (i.key, i.value, DeadLetter.from_headers(error_headers(i.source, i.error, i.redrive)))
            for i in self.dead_letters.items
        ]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_dead_letters_contract(check: Callable[[Parking], Awaitable[None]]) -> None:
    await check(FakeParking())
