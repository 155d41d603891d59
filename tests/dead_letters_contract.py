"""Contract every DeadLetters adapter must meet: run against the fake and Kafka.

Each ``check_*`` coroutine takes a fresh :class:`Parking`: the adapter under test and a
way to read its letters back as ``scribe dlq`` reads them (key, value, and the envelope
its headers carry). ``tests/unit/test_dead_letters_contract.py`` runs them on the fake,
``tests/integration/test_topics.py`` on the real broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from agents.ports import DeadLetters
from schemas import FlowSubmissionError, SchemaViolation, SourceRef
from schemas.dead_letters import DeadLetter

Letter = tuple[bytes | None, bytes | None, DeadLetter]


class Parking(Protocol):
    """The dead-letter adapter under test and its letters so far."""

    dead_letters: DeadLetters

    async def letters(self) -> list[Letter]:
        """Every letter, in the order written."""
        ...


SOURCE = SourceRef(topic="novel-events", partition=2, offset=41)


async def check_a_letter_keeps_its_bytes_its_reason_and_where_it_stood(p: Parking) -> None:
    await p.dead_letters.dead_letter(
        key=b"n1", value=b'{"event_type": 7}', source=SOURCE, error=SchemaViolation("bad type")
    )
    [(key, value, letter)] = await p.letters()
    assert (key, value) == (b"n1", b'{"event_type": 7}')
    assert (letter.error_class, letter.reason, letter.retriable) == (
        "SchemaViolation",
        "bad type",
        False,
    )
    assert letter.source == SOURCE and letter.redrive == 0


async def check_a_retriable_error_and_the_redrive_count_are_kept(p: Parking) -> None:
    await p.dead_letters.dead_letter(
        key=b"n1", value=b"{}", source=SOURCE, error=FlowSubmissionError("Prefect away"), redrive=2
    )
    [(_, _, letter)] = await p.letters()
    assert (letter.error_class, letter.retriable, letter.redrive) == (
        "FlowSubmissionError",
        True,
        2,
    )


async def check_a_keyless_tombstone_is_parked_as_it_came(p: Parking) -> None:
    await p.dead_letters.dead_letter(
        key=None, value=None, source=SOURCE, error=SchemaViolation("null value")
    )
    [(key, value, letter)] = await p.letters()
    assert (key, value, letter.reason) == (None, None, "null value")


CONTRACT: list[Callable[[Parking], Awaitable[None]]] = [
    check_a_letter_keeps_its_bytes_its_reason_and_where_it_stood,
    check_a_retriable_error_and_the_redrive_count_are_kept,
    check_a_keyless_tombstone_is_parked_as_it_came,
]
