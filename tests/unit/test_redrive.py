"""A redriven event keeps its original position (pure header logic of ``scribe dlq``)."""

from __future__ import annotations

from schemas import SourceRef
from schemas.dead_letters import (
    H_ORIGIN_OFFSET,
    DeadLetter,
    dead_letter_headers,
    message_source,
    redrive_headers,
)


def letter(topic: str = "events", partition: int = 1, offset: int = 7) -> DeadLetter:
    source = SourceRef(topic=topic, partition=partition, offset=offset)
    return DeadLetter.from_headers(dead_letter_headers(source, "FlowRunFailed", "x", True))


def test_a_redriven_message_stands_at_its_original_position() -> None:
    headers = redrive_headers(letter())
    source, redrive = message_source("events", 1, 90, 123, headers)
    assert (source.topic, source.partition, source.offset, source.timestamp_ms) == (
        "events",
        1,
        7,
        123,
    )
    assert redrive == 1


def test_a_redriven_message_is_read_at_its_own_position() -> None:
    """Ordering uses where it was first logged; its bytes are read where they still are
    (retention may have taken the original; issue 19, hole 6)."""
    source, _ = message_source("events", 1, 90, None, redrive_headers(letter()))
    assert (source.offset, source.read_offset, source.stored_at) == (7, 90, 90)
    plain, _ = message_source("events", 1, 90, None, [])
    assert (plain.offset, plain.read_offset, plain.stored_at) == (90, None, 90)


def test_a_second_redrive_keeps_the_first_position_and_counts() -> None:
    first, _ = message_source("events", 1, 90, None, redrive_headers(letter()))
    parked_again = DeadLetter.from_headers(
        [*dead_letter_headers(first, "FlowRunFailed", "y", True), ("scribe.redrive", b"1")]
    )
    source, redrive = message_source("events", 1, 150, None, redrive_headers(parked_again))
    assert (source.offset, redrive) == (7, 2)


def test_an_origin_elsewhere_is_not_trusted_for_ordering() -> None:
    other_partition = redrive_headers(letter(partition=0))
    assert message_source("events", 1, 90, None, other_partition)[0].offset == 90
    other_topic = redrive_headers(letter(topic="novel-events.embeddings"))
    assert message_source("events", 1, 90, None, other_topic)[0].offset == 90
    later = [*redrive_headers(letter()), (H_ORIGIN_OFFSET, b"95")]
    later = [h for h in later if h != (H_ORIGIN_OFFSET, b"7")]
    assert message_source("events", 1, 90, None, later)[0].offset == 90


def test_a_plain_message_is_where_it_is() -> None:
    assert message_source("events", 2, 5, None, []) == (
        SourceRef(topic="events", partition=2, offset=5),
        0,
    )
    assert message_source("events", 2, 5, None, [("scribe.redrive", b"junk")])[1] == 0
