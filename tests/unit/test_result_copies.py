"""What a resink re-publishes, and which copies it leaves out (defect 10)."""

from __future__ import annotations

import uuid

import pytest

from schemas import (
    ChapterEmbedded,
    ChapterRemoved,
    ChunkVector,
    InvalidEvent,
    Target,
    parse_result,
)
from streams.commands.result_copies import H_COPY_OF, MAX_CHAIN, Ancestry, Origin, resend

LIVE = "chunks__m__1"
NEW = "chunks__m__2"
REBUILD = Target(NEW)
IN_PLACE = Target()  # the live index, whatever the alias points at


def embedded(target: str | None = None, model: str = "m") -> bytes:
    return (
        ChapterEmbedded(
            event_id=uuid.uuid4(),
            novel_id="n1",
            chapter_id="c1",
            version=1,
            model=model,
            dimension=2,
            pipeline_version="p",
            chunks=(ChunkVector(chunk_no=0, text="x", vector=(1.0, 0.0)),),
            target=target,
        )
        .model_dump_json()
        .encode()
    )


def test_a_copy_names_its_ancestry_nearest_first_and_an_original_names_none() -> None:
    original = Ancestry()
    first = original.copied_as(Origin(3, 41, IN_PLACE))
    second = first.copied_as(Origin(1, 90, Target(LIVE)))
    assert second.chain == (Origin(1, 90, Target(LIVE)), Origin(3, 41, IN_PLACE))
    assert Ancestry.from_headers(second.headers()) == second
    assert Ancestry.from_headers([]) == Ancestry()
    assert Ancestry.from_headers([(H_COPY_OF, b"[[1,")]) == Ancestry()  # unreadable
    long = Ancestry()
    for offset in range(20):
        long = long.copied_as(Origin(0, offset, IN_PLACE))
    assert len(long.chain) == MAX_CHAIN and long.chain[0].offset == 19


def test_a_copy_is_left_out_only_when_the_replay_read_one_of_its_ancestors() -> None:
    selected = (IN_PLACE, Target(LIVE))
    read = {(0, 10), (0, 12)}

    def has_read(partition: int, offset: int) -> bool:
        return (partition, offset) in read

    other = Target("x")
    assert Ancestry((Origin(0, 10, IN_PLACE),)).repeats_one_of(selected, has_read)
    assert Ancestry((Origin(0, 11, other), Origin(0, 12, Target(LIVE)))).repeats_one_of(
        selected, has_read
    )
    assert not Ancestry((Origin(0, 9, IN_PLACE),)).repeats_one_of(selected, has_read)  # not read
    assert not Ancestry((Origin(0, 10, other),)).repeats_one_of(selected, has_read)  # other
    assert not Ancestry().repeats_one_of(selected, has_read)


Message = tuple[bytes, list[tuple[str, bytes]]]


def _resink(log: list[Message], live: str, target: str | None, start: int = 0) -> int:
    """One resink over a one-partition results topic, as ``streams.commands.replay`` runs it."""
    sent, end = 0, len(log)
    for offset in range(start, end):
        value, headers = log[offset]
        out = resend(value, live=live, target=Target.of(target), model="m", dimension=2)
        if out is None:
            continue
        ancestry = Ancestry.from_headers(headers)

        def has_read(partition: int, at: int, upto: int = offset) -> bool:
            return start <= at < upto  # read in order, one partition

        if ancestry.repeats_one_of((IN_PLACE, Target(live)), has_read):
            continue
        copy = ancestry.copied_as(Origin(0, offset, out.original_target))
        log.append((out.value, copy.headers()))
        sent += 1
    return sent


def test_every_full_resink_sends_each_result_once_after_in_place_ones_too() -> None:
    """The reviewer's history: a full rebuild, an in-place resink from after the original
    (it copies the rebuild's copy back to no collection), then full rebuilds: with only
    the nearest ancestor named, the third and later sent 2 for 1."""
    log: list[Message] = [(embedded(None), [])]
    assert _resink(log, "c0", "c1") == 1
    assert _resink(log, "c1", None, start=1) == 1  # in place, from offset 1
    assert [_resink(log, f"c{k}", f"c{k + 1}") for k in range(1, 5)] == [1, 1, 1, 1]


def test_the_copies_alone_rebuild_once_retention_took_the_originals() -> None:
    log: list[Message] = [(embedded(None), []), (embedded(None), [])]
    assert _resink(log, "c0", "c1") == 2
    assert _resink(log, "c1", "c2") == 2
    start = 4  # retention took the originals and the first rebuild's copies
    assert _resink(log, "c2", "c3", start=start) == 2


def test_resend_addresses_the_live_index_results_to_the_rebuild() -> None:
    for address in (None, LIVE):
        out = resend(embedded(address), live=LIVE, target=REBUILD, model="m", dimension=2)
        assert out is not None and out.original_target == Target.of(address)
        assert parse_result(out.value).target == REBUILD


def test_resend_in_place_keeps_the_bytes_of_an_unaddressed_result() -> None:
    value = embedded(None)
    out = resend(value, live=LIVE, target=IN_PLACE, model="m", dimension=2)
    assert out is not None and out.value == value and out.original_target == IN_PLACE


def test_resend_leaves_out_other_rebuilds_and_other_models() -> None:
    assert resend(embedded("other"), live=LIVE, target=REBUILD, model="m", dimension=2) is None
    assert resend(embedded(None, "m2"), live=LIVE, target=REBUILD, model="m", dimension=2) is None
    # Without a known model (an empty index), the dimension decides.
    kept = resend(embedded(None, "m2"), live=LIVE, target=REBUILD, model=None, dimension=2)
    assert kept is not None
    assert resend(embedded(None), live=LIVE, target=REBUILD, model=None, dimension=3) is None


def test_resend_keeps_removals_whatever_the_model() -> None:
    value = ChapterRemoved(event_id=uuid.uuid4(), novel_id="n1", chapter_id="c1", version=2)
    out = resend(
        value.model_dump_json().encode(), live=LIVE, target=REBUILD, model="m", dimension=2
    )
    assert out is not None and parse_result(out.value).target == REBUILD


def test_resend_refuses_what_is_not_a_result() -> None:
    with pytest.raises(InvalidEvent):
        resend(b"not json", live=LIVE, target=REBUILD, model="m", dimension=2)
