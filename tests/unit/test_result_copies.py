"""What a resink re-publishes, and which copies it leaves out (defect 10)."""

from __future__ import annotations

import uuid

import pytest

from schemas import ChapterEmbedded, ChapterRemoved, ChunkVector, InvalidEvent, parse_result
from streams.result_copies import H_COPY_OFFSET, CopyOf, resend

LIVE = "chunks__m__1"
NEW = "chunks__m__2"


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


def test_a_copy_names_its_original_and_an_original_names_none() -> None:
    copy = CopyOf(partition=3, offset=41, target=LIVE)
    assert CopyOf.from_headers(copy.headers()) == copy
    assert CopyOf.from_headers(CopyOf(0, 7, None).headers()) == CopyOf(0, 7, None)
    assert CopyOf.from_headers([]) is None
    garbled = [h if h[0] != H_COPY_OFFSET else (H_COPY_OFFSET, b"x") for h in copy.headers()]
    assert CopyOf.from_headers(garbled) is None


def test_a_copy_is_left_out_only_when_the_replay_re_sends_its_original() -> None:
    selected = (None, LIVE)
    starts = {0: 10, 1: 0}
    assert CopyOf(0, 10, None).redundant(selected, starts)  # the original is read too
    assert CopyOf(0, 12, LIVE).redundant(selected, starts)
    assert not CopyOf(0, 9, None).redundant(selected, starts)  # retention took it
    assert not CopyOf(1, 5, "chunks__m__0").redundant(selected, starts)  # not selected
    assert not CopyOf(7, 5, None).redundant(selected, starts)  # no such partition read


def test_resend_addresses_the_live_index_results_to_the_rebuild() -> None:
    for address in (None, LIVE):
        out = resend(embedded(address), live=LIVE, target=NEW, model="m", dimension=2)
        assert out is not None and out.original_target == address
        assert parse_result(out.value).target == NEW


def test_resend_in_place_keeps_the_bytes_of_an_unaddressed_result() -> None:
    value = embedded(None)
    out = resend(value, live=LIVE, target=None, model="m", dimension=2)
    assert out is not None and out.value == value and out.original_target is None


def test_resend_leaves_out_other_rebuilds_and_other_models() -> None:
    assert resend(embedded("other"), live=LIVE, target=NEW, model="m", dimension=2) is None
    assert resend(embedded(None, "m2"), live=LIVE, target=NEW, model="m", dimension=2) is None
    # Without a known model (an empty index), the dimension decides.
    kept = resend(embedded(None, "m2"), live=LIVE, target=NEW, model=None, dimension=2)
    assert kept is not None
    assert resend(embedded(None), live=LIVE, target=NEW, model=None, dimension=3) is None


def test_resend_keeps_removals_whatever_the_model() -> None:
    value = ChapterRemoved(event_id=uuid.uuid4(), novel_id="n1", chapter_id="c1", version=2)
    out = resend(value.model_dump_json().encode(), live=LIVE, target=NEW, model="m", dimension=2)
    assert out is not None and parse_result(out.value).target == NEW


def test_resend_refuses_what_is_not_a_result() -> None:
    with pytest.raises(InvalidEvent):
        resend(b"not json", live=LIVE, target=NEW, model="m", dimension=2)
