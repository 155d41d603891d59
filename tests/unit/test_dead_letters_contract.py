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


def test_a_keyless_tombstone_is_stored_empty_and_read_back_as_null() -> None:
    """Kafka clients refuse a record with neither key nor value (aiokafka asserts): the
    real DLQ writer could not park one and the worker died on it. It is stored as b""
    with a marker and read back as it came; every other record is stored as it is."""
    from schemas.dead_letters import H_NULL_VALUE, as_parked, storable

    value, headers = storable(None, None, [("a", b"1")])
    assert (value, headers) == (b"", [("a", b"1"), (H_NULL_VALUE, b"1")])
    assert as_parked(value, headers) is None
    assert storable(b"k", None, []) == (None, []), "a keyed tombstone Kafka takes as it is"
    assert storable(None, b"", []) == (b"", [])
    assert as_parked(b"", []) == b"", "an empty value that came empty stays empty"
