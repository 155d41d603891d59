"""Property: whatever malformed bytes arrive, the chapter agent dead-letters them and goes on.

Every generated malformed message must end in the dead-letter fake with an InvalidEvent
error and a non-empty reason that the real DLQ adapter can put in a Kafka header; no
exception may escape ``ChapterAgent.handle`` and nothing may be submitted or published.
A generated valid event must, on the contrary, never be dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import UTC
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.chapter_agent import ChapterAgent
from agents.retry import Backoff
from schemas import InvalidEvent, SourceRef
from schemas.dead_letters import error_headers
from schemas.events import EVENT_TYPES
from tests.fakes import InMemoryDeadLetters, InMemoryLedger, InMemoryPublisher, InMemorySubmitter

MAX_TEXT_BYTES = 64
SOURCE = SourceRef(topic="novel-events", partition=0, offset=5)
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()  # private loop: leaves pytest-asyncio's loop alone
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def handle(
    key: bytes | None, value: bytes | None
) -> tuple[InMemorySubmitter, InMemoryPublisher, InMemoryDeadLetters, str | None]:
    sub, pub, dlq = InMemorySubmitter(), InMemoryPublisher(), InMemoryDeadLetters()
    agent = ChapterAgent(
        submitter=sub,
        results=pub,
        dead_letters=dlq,
        ledger=InMemoryLedger(),
        pipeline_version="pv",
        max_text_bytes=MAX_TEXT_BYTES,
        backoff=Backoff(initial=0.001),
    )
    run_id = run(agent.handle(key, value, SOURCE))
    return sub, pub, dlq, run_id


# -- strategies ----------------------------------------------------------------------------

entity_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
aware_times = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
small_texts = st.text(max_size=MAX_TEXT_BYTES // 4)  # at most 4 UTF-8 bytes per character


@st.composite
def valid_payloads(draw: st.DrawFn, types: tuple[str, ...] = EVENT_TYPES) -> dict[str, Any]:
    event_type = draw(st.sampled_from(types))
    obj: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "event_type": event_type,
        "novel_id": draw(entity_ids),
        "version": draw(st.integers(1, 2**31)),
        "occurred_at": draw(aware_times),
    }
    if draw(st.booleans()):
        obj["schema_version"] = 1
    if event_type != "novel.deleted":
        obj["chapter_id"] = draw(entity_ids)
    if event_type in ("chapter.created", "chapter.updated"):
        obj["title"] = draw(small_texts)
        obj["text"] = draw(small_texts)
    return obj


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
not_a_string = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(), st.none(), max_size=2),
)
bad_ids = st.one_of(
    not_a_string,
    st.sampled_from(["", "-abc", ".x", "a b", "a:b", 'a"b', "a/b", "ａ", "a\n", "x" * 129]),
)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(not_a_string, st.sampled_from(["", "not-a-uuid", "1234", "xyz" * 12])),
    "novel_id": bad_ids,
    "chapter_id": bad_ids,
    "version": st.one_of(
        st.integers(max_value=0),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.sampled_from(["", "three", "1.5", "v2", "0"]),
        st.floats(allow_nan=False).filter(lambda f: not f.is_integer() or f < 1),
    ),
    "occurred_at": st.one_of(
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.sampled_from(["", "yesterday", "2024-13-01T00:00:00Z", "12:00"]),
        st.datetimes(timezones=st.none()).map(lambda d: d.isoformat()),  # naive
    ),
    "title": not_a_string,
    "text": not_a_string,
}


@st.composite
def field_removed(draw: st.DrawFn) -> bytes:
    obj = draw(valid_payloads())
    field = draw(st.sampled_from(sorted(k for k in obj if k != "schema_version")))
    del obj[field]
    event(f"removed {field}")
    return encode(obj)


@st.composite
def field_mutated(draw: st.DrawFn) -> bytes:
    obj = draw(valid_payloads())
    field = draw(st.sampled_from(sorted(k for k in obj if k in WRONG)))
    obj[field] = draw(WRONG[field])
    event(f"mutated {field}")
    return encode(obj)


@st.composite
def unknown_type(draw: st.DrawFn) -> bytes:
    obj = draw(valid_payloads())
    obj["event_type"] = draw(json_values.filter(lambda v: v not in EVENT_TYPES))
    return encode(obj)


@st.composite
def bad_schema_version(draw: st.DrawFn) -> bytes:
    obj = draw(valid_payloads())
    obj["schema_version"] = draw(
        st.one_of(
            st.integers().filter(lambda v: v != 1),
            st.none(),
            st.booleans(),
            st.text(),
            st.floats(allow_nan=False),
            st.lists(st.integers(), max_size=2),
        )
    )
    return encode(obj)


@st.composite
def too_large(draw: st.DrawFn) -> bytes:
    obj = draw(valid_payloads(("chapter.created", "chapter.updated")))
    obj["text"] = draw(st.text(min_size=MAX_TEXT_BYTES + 1, max_size=3 * MAX_TEXT_BYTES))
    return encode(obj)


@st.composite
def invalid_utf8(draw: st.DrawFn) -> bytes:
    valid = json.dumps(draw(valid_payloads()), ensure_ascii=False).encode()
    at = draw(st.integers(0, len(valid)))
    junk = draw(
        st.sampled_from(
            [
                b"\xff",
                b"\xfe",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xe6\x97",
                b"\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\xc0\xaf",
            ]
        )
    )
    return valid[:at] + junk + valid[at:]


@st.composite
def huge_number(draw: st.DrawFn) -> bytes:
    """Valid JSON whose number Python's ``json`` refuses (over 4,300 digits: ValueError)."""
    obj = draw(valid_payloads())
    field = draw(st.sampled_from(["version", "schema_version", "title", "extra"]))
    digits = "9" * draw(st.integers(4301, 6000))
    obj[field] = "@@"
    return encode(obj).replace(b'"@@"', digits.encode())


@st.composite
def not_json(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(valid_payloads()))
    return text[: draw(st.integers(0, len(text) - 1))].encode()  # truncated


malformed = st.one_of(
    st.binary(max_size=200).map(lambda b: ("random bytes", b)),
    json_values.filter(lambda v: not isinstance(v, dict) or "event_id" not in v).map(
        lambda v: ("random json", encode(v))
    ),
    field_removed().map(lambda b: ("field removed", b)),
    field_mutated().map(lambda b: ("field mutated", b)),
    unknown_type().map(lambda b: ("unknown type", b)),
    bad_schema_version().map(lambda b: ("bad schema version", b)),
    too_large().map(lambda b: ("too large", b)),
    invalid_utf8().map(lambda b: ("invalid utf-8", b)),
    not_json().map(lambda b: ("not json", b)),
    huge_number().map(lambda b: ("huge number", b)),
    st.none().map(lambda b: ("null value", b)),
)


# -- properties ----------------------------------------------------------------------------


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=malformed, key=st.one_of(st.none(), st.binary(max_size=16)))
def test_every_malformed_message_is_dead_lettered(
    case: tuple[str, bytes | None], key: bytes | None
) -> None:
    kind, value = case
    event(kind)
    sub, pub, dlq, run_id = handle(key, value)
    assert run_id is None
    assert sub.calls == [] and pub.published == []
    assert len(dlq.items) == 1, kind
    got_key, got_value, got_source, error, _ = dlq.items[0]
    assert (got_key, got_value, got_source) == (key, value, SOURCE)
    assert isinstance(error, InvalidEvent)
    assert error.retriable is False
    assert error.reason.strip()


@settings(max_examples=100, deadline=None)
@given(obj=valid_payloads())
def test_valid_events_are_not_dead_lettered(obj: dict[str, Any]) -> None:
    sub, pub, dlq, run_id = handle(obj["novel_id"].encode(), encode(obj))
    assert dlq.items == []
    if obj["event_type"] in ("chapter.created", "chapter.updated"):
        assert run_id == "run-1" and len(sub.calls) == 1 and pub.published == []
    else:
        assert run_id is None and sub.calls == [] and len(pub.published) == 1


@settings(max_examples=50, deadline=None)
@given(obj=valid_payloads(), key=st.binary(max_size=16))
def test_a_key_other_than_the_novel_id_is_dead_lettered(obj: dict[str, Any], key: bytes) -> None:
    if key == obj["novel_id"].encode():
        key += b"x"
    sub, pub, dlq, _ = handle(key, encode(obj))
    assert len(dlq.items) == 1 and isinstance(dlq.items[0][3], InvalidEvent)
    assert sub.calls == [] and pub.published == []


@settings(max_examples=50, deadline=None)
@given(obj=valid_payloads())
def test_a_keyless_event_is_dead_lettered(obj: dict[str, Any]) -> None:
    """Without a key the producer spreads a novel's events over partitions: their order is
    lost, so a keyless event is refused like one with another novel's key."""
    sub, pub, dlq, _ = handle(None, encode(obj))
    assert len(dlq.items) == 1 and isinstance(dlq.items[0][3], InvalidEvent)
    assert "no key" in dlq.items[0][3].reason
    assert sub.calls == [] and pub.published == []


# -- the parsers alone: whatever arrives, only InvalidEvent ----------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.none(), st.binary(max_size=300), malformed.map(lambda c: c[1])))
def test_the_parsers_raise_only_invalid_event(raw: bytes | None) -> None:
    """``parse_event`` and ``parse_result`` (anyone who may write the results topic can
    send anything) turn every input, null included, into an event or an InvalidEvent."""
    from schemas import parse_event, parse_result

    for parse in (parse_event, parse_result):
        try:
            parse(raw)
        except InvalidEvent as exc:
            assert exc.reason.strip()
            error_headers(SOURCE, exc)  # encodable as the DLQ's headers


@pytest.mark.parametrize(
    "raw",
    [None, b'{"event_type": "chapter.created", "version": ' + b"7" * 5000 + b"}", b"[" * 100000],
    ids=["null", "5000-digit number", "deep nesting"],
)
def test_known_escapes_become_invalid_event(raw: bytes | None) -> None:
    """The records that once stopped a partition: a 5,000-digit number (ValueError from
    ``json.loads``) and a null value (TypeError)."""
    from schemas import parse_event, parse_result

    for parse in (parse_event, parse_result):
        with pytest.raises(InvalidEvent):
            parse(raw)


# -- the lone-surrogate case (valid JSON, yet not encodable as UTF-8) --------------------------


@pytest.mark.parametrize("field", ["text", "title", "event_type"])
@pytest.mark.parametrize("surrogate", ["\ud800", "\udfff"], ids=["d800", "dfff"])
def test_lone_surrogate_escapes_are_dead_lettered(field: str, surrogate: str) -> None:
    """``{"text": "\\ud800"}`` is valid JSON whose string cannot be encoded as UTF-8.

    Today parse_event lets UnicodeEncodeError escape from ``ChapterAgent.handle`` for
    ``text`` (the size check encodes it), and accepts it in ``title`` (the event is
    submitted; Prefect's JSON encoding and every later Kafka/Milvus write of it break).
    ``event_type`` is a regression guard: its reason quotes the value with ``repr``, which
    escapes the surrogate, so the DLQ header stays encodable.
    """
    obj: dict[str, Any] = {
        "event_id": "3f1c2b6a-7e90-4c1e-9d55-0b7d5f1e8a43",
        "event_type": "chapter.created",
        "novel_id": "n1",
        "chapter_id": "c1",
        "version": 1,
        "occurred_at": "2024-05-01T12:00:00Z",
        "title": "t",
        "text": "x",
    }
    obj[field] = obj[field][:4] + surrogate
    value = encode(obj)  # ensure_ascii: the surrogate travels as a \\udxxx escape
    assert b"\\ud" in value
    sub, pub, dlq, _ = handle(b"n1", value)
    assert len(dlq.items) == 1 and isinstance(dlq.items[0][3], InvalidEvent)
    assert sub.calls == [] and pub.published == []
