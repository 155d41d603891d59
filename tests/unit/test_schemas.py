"""Event and result contracts: parsing, typed errors, upcasting, JSON schema export."""

from __future__ import annotations

import base64
import json
import random
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

import schemas
from schemas import (
    BadEncoding,
    ChapterCreated,
    ChapterDeleted,
    ChapterEmbedded,
    ChapterRemoved,
    ChapterUpdated,
    ChunkVector,
    ConfigurationError,
    EmbeddingError,
    EventTooLarge,
    FlowSubmissionError,
    InvalidEvent,
    MalformedJSON,
    NovelDeleted,
    NovelRemoved,
    PublishError,
    SchemaViolation,
    ScribeError,
    ServiceUnavailable,
    SourceRef,
    UnknownEventType,
    UnsupportedSchemaVersion,
    VectorStoreError,
    event_json_schema,
    parse_event,
    parse_result,
    result_json_schema,
)
from schemas.upcasting import embedded_v1_to_v2, upcast, upcast_result

EVENT_ID = "0b7d5f1e-8a43-4c1e-9d55-3f1c2b6a7e90"


def payload(event_type: str = "chapter.created", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_type": event_type,
        "schema_version": 1,
        "novel_id": "xiyouji",
        "version": 1,
        "occurred_at": "2024-05-01T12:00:00+00:00",
    }
    if event_type in ("chapter.created", "chapter.updated", "chapter.deleted"):
        base["chapter_id"] = "ch0001"
    if event_type in ("chapter.created", "chapter.updated"):
        base["title"] = "第一回"
        base["text"] = "混沌未分天地乱。"
    base.update(overrides)
    return base


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


# -- valid events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "cls"),
    [
        ("chapter.created", ChapterCreated),
        ("chapter.updated", ChapterUpdated),
        ("chapter.deleted", ChapterDeleted),
        ("novel.deleted", NovelDeleted),
    ],
)
def test_valid_events_parse_into_their_class(event_type: str, cls: type) -> None:
    event = parse_event(raw(payload(event_type, version=3)))
    assert type(event) is cls
    assert event.event_type == event_type
    assert event.event_id == uuid.UUID(EVENT_ID)
    assert event.novel_id == "xiyouji"
    assert event.version == 3
    assert event.occurred_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_chapter_fields_are_kept_verbatim() -> None:
    event = parse_event(raw(payload(text="  两行\n文字。  ", title=" 标题 ")))
    assert isinstance(event, ChapterCreated)
    assert event.chapter_id == "ch0001"
    assert event.text == "  两行\n文字。  "  # no whitespace stripping of the contract's text
    assert event.title == " 标题 "


def test_parse_accepts_str_and_bytes_alike() -> None:
    as_text = json.dumps(payload())
    assert parse_event(as_text) == parse_event(as_text.encode())


def test_missing_schema_version_defaults_to_1_and_extra_fields_are_ignored() -> None:
    event = parse_event(raw({**without(payload(), "schema_version"), "extra": "ignored"}))
    assert event.schema_version == 1
    assert not hasattr(event, "extra")


@pytest.mark.parametrize("field", ["novel_id", "version", "text"])
def test_events_are_frozen(field: str) -> None:
    event = parse_event(raw(payload()))
    with pytest.raises(ValidationError):
        setattr(event, field, "other")


def test_results_are_frozen() -> None:
    result = ChapterRemoved(event_id=uuid.uuid4(), novel_id="n", chapter_id="c", version=1)
    with pytest.raises(ValidationError):
        result.version = 2  # type: ignore[misc]


# -- invalid input: each InvalidEvent subclass from the right input ----------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"\xff\xfe{}", BadEncoding),
        (b'{"event_type": "chapter.created", "text": "\xc3\x28"}', BadEncoding),
        (b"\xed\xa0\x80", BadEncoding),  # an encoded surrogate is not UTF-8
        (b"not json", MalformedJSON),
        (b"", MalformedJSON),
        (b'{"event_type": "chapter.created"', MalformedJSON),
        (raw([payload()]), MalformedJSON),  # an array of events is not an event
        (b'"chapter.created"', MalformedJSON),
        (b"42", MalformedJSON),
        (b"null", MalformedJSON),
        (b"[" * 100_000 + b"]" * 100_000, MalformedJSON),  # recursion limit
        (raw(payload("chapter.renamed")), UnknownEventType),
        (raw(without(payload(), "event_type")), UnknownEventType),
        (raw(payload(event_type=None)), UnknownEventType),
        (raw(payload(event_type=["chapter.created"])), UnknownEventType),
        (raw(payload(event_type="Chapter.Created")), UnknownEventType),
        (raw(payload(schema_version=2)), UnsupportedSchemaVersion),
        (raw(payload(schema_version="x")), UnsupportedSchemaVersion),
        (raw(payload(schema_version="1")), UnsupportedSchemaVersion),
        (raw(payload(schema_version=0)), UnsupportedSchemaVersion),
        (raw(payload(schema_version=-1)), UnsupportedSchemaVersion),
        (raw(payload(schema_version=True)), UnsupportedSchemaVersion),
        (raw(payload(schema_version=1.5)), UnsupportedSchemaVersion),
        (raw(payload(schema_version=None)), UnsupportedSchemaVersion),
        (raw(without(payload(), "chapter_id")), SchemaViolation),
        (raw(without(payload(), "event_id")), SchemaViolation),
        (raw(without(payload(), "occurred_at")), SchemaViolation),
        (raw(without(payload(), "text")), SchemaViolation),
        (raw(without(payload("novel.deleted"), "novel_id")), SchemaViolation),
        (raw(payload(chapter_id="ch 1")), SchemaViolation),
        (raw(payload(chapter_id="-ch1")), SchemaViolation),
        (raw(payload(chapter_id="")), SchemaViolation),
        (raw(payload(novel_id="a:b")), SchemaViolation),
        (raw(payload(novel_id='x"y')), SchemaViolation),
        (raw(payload(novel_id="n" * 129)), SchemaViolation),
        (raw(payload(novel_id=7)), SchemaViolation),
        (raw(payload(event_id="not-a-uuid")), SchemaViolation),
        (raw(payload(version=0)), SchemaViolation),
        (raw(payload(version=-3)), SchemaViolation),
        (raw(payload(version="three")), SchemaViolation),
        (raw(payload(version=1.5)), SchemaViolation),
        (raw(payload(occurred_at="2024-05-01T12:00:00")), SchemaViolation),  # naive
        (raw(payload(occurred_at="yesterday")), SchemaViolation),
        (raw(payload(title=None)), SchemaViolation),
        (raw(payload(text=["a"])), SchemaViolation),
    ],
)
def test_invalid_input_raises_the_precise_error(value: bytes, error: type[InvalidEvent]) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(value)
    assert type(info.value) is error
    assert info.value.reason
    assert info.value.retriable is False


def test_schema_violation_names_the_field() -> None:
    with pytest.raises(SchemaViolation, match="chapter_id"):
        parse_event(raw(without(payload(), "chapter_id")))
    with pytest.raises(SchemaViolation, match="occurred_at"):
        parse_event(raw(payload(occurred_at="2024-05-01T12:00:00")))


def test_text_over_the_limit_is_too_large_and_the_limit_counts_utf8_bytes() -> None:
    text = "猴" * 10  # 30 bytes in UTF-8, 10 characters
    assert isinstance(parse_event(raw(payload(text=text)), max_text_bytes=30), ChapterCreated)
    with pytest.raises(EventTooLarge, match="30 bytes"):
        parse_event(raw(payload(text=text)), max_text_bytes=29)
    with pytest.raises(EventTooLarge):
        parse_event(raw(payload("chapter.updated", text=text)), max_text_bytes=29)
    # deletions carry no text: the limit does not apply
    deleted = parse_event(raw(payload("chapter.deleted")), max_text_bytes=1)
    assert isinstance(deleted, ChapterDeleted)


@pytest.mark.parametrize("field", ["text", "title"])
def test_lone_surrogate_escape_is_an_invalid_event(field: str) -> None:
    """``"\\ud800"`` is valid JSON but no valid Unicode text: it cannot be encoded as UTF-8.

    It must be refused at parse time as an InvalidEvent (dead letter), not escape as a
    UnicodeEncodeError (text) or be accepted and break every later JSON/Kafka/Milvus write
    (title).
    """
    value = json.dumps(payload(**{field: "a\ud800b"})).encode()  # ensure_ascii: \ud800 escape
    with pytest.raises(InvalidEvent):
        parse_event(value)


def test_version_beyond_int64_is_a_schema_violation() -> None:
    """Versions are stored as SQLite INTEGER / Milvus INT64; larger ones must be refused here."""
    with pytest.raises(SchemaViolation):
        parse_event(raw(payload(version=2**63)))
    assert parse_event(raw(payload(version=2**63 - 1))).version == 2**63 - 1


# -- retriable flags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "retriable"),
    [
        (ScribeError, False),
        (InvalidEvent, False),
        (BadEncoding, False),
        (MalformedJSON, False),
        (UnknownEventType, False),
        (UnsupportedSchemaVersion, False),
        (SchemaViolation, False),
        (EventTooLarge, False),
        (ConfigurationError, False),
        (EmbeddingError, False),
        (ServiceUnavailable, True),
        (FlowSubmissionError, True),
        (VectorStoreError, True),
        (PublishError, True),
    ],
)
def test_retriable_flags(cls: type[ScribeError], retriable: bool) -> None:
    assert cls.retriable is retriable
    assert cls("boom").retriable is retriable
    assert issubclass(cls, ScribeError)


def test_invalid_event_subclasses_and_service_subclasses() -> None:
    for cls in (
        BadEncoding,
        MalformedJSON,
        UnknownEventType,
        UnsupportedSchemaVersion,
        SchemaViolation,
        EventTooLarge,
    ):
        assert issubclass(cls, InvalidEvent)
    for cls in (FlowSubmissionError, VectorStoreError, PublishError):
        assert issubclass(cls, ServiceUnavailable)
        assert not issubclass(cls, InvalidEvent)


def test_reason_falls_back_to_the_class_name() -> None:
    assert SchemaViolation("bad field").reason == "bad field"
    assert SchemaViolation().reason == "SchemaViolation"


# -- upcasting -----------------------------------------------------------------------------


def _v1_to_v2(p: dict[str, Any]) -> dict[str, Any]:
    p["headline"] = p.pop("title")
    return p


def _v2_to_v3(p: dict[str, Any]) -> dict[str, Any]:
    p["words"] = len(p["text"].split())
    return p


def test_upcast_is_identity_at_the_current_version() -> None:
    p = payload()
    assert upcast(p) == p


def test_upcast_applies_a_custom_step() -> None:
    original = payload(text="one two three")
    out = upcast(original, current=2, upcasters={1: _v1_to_v2})
    assert out["schema_version"] == 2
    assert out["headline"] == "第一回"
    assert "title" not in out
    assert original["title"] == "第一回"  # the input payload is not mutated
    assert original["schema_version"] == 1


def test_upcast_chains_steps_and_treats_missing_version_as_1() -> None:
    out = upcast(
        without(payload(text="one two three"), "schema_version"),
        current=3,
        upcasters={1: _v1_to_v2, 2: _v2_to_v3},
    )
    assert out["schema_version"] == 3
    assert out["headline"] == "第一回"
    assert out["words"] == 3


def test_upcast_starts_from_the_payload_version() -> None:
    p = {**payload(text="a b"), "schema_version": 2, "headline": "h"}
    del p["title"]
    out = upcast(p, current=3, upcasters={1: _v1_to_v2, 2: _v2_to_v3})
    assert out["words"] == 2 and out["headline"] == "h"


def test_upcast_rejects_a_gap_in_the_table() -> None:
    with pytest.raises(UnsupportedSchemaVersion, match="no upcaster from schema_version 2"):
        upcast(payload(), current=3, upcasters={1: _v1_to_v2})
    with pytest.raises(UnsupportedSchemaVersion, match="no upcaster from schema_version 1"):
        upcast(payload(), current=2, upcasters={})


@pytest.mark.parametrize("version", [4, "2", 0, None, True, 2.0])
def test_upcast_rejects_newer_or_non_integer_versions(version: Any) -> None:
    with pytest.raises(UnsupportedSchemaVersion):
        upcast(payload(schema_version=version), current=3, upcasters={1: _v1_to_v2, 2: _v2_to_v3})


# -- results -------------------------------------------------------------------------------


def embedded(chunks: list[ChunkVector], dimension: int = 2, **kw: Any) -> ChapterEmbedded:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "novel_id": "n1",
        "chapter_id": "c1",
        "version": 1,
        "model": "m",
        "dimension": dimension,
        "pipeline_version": "p1",
        "chunks": chunks,
    }
    fields.update(kw)
    return ChapterEmbedded(**fields)


def chunk(no: int, dims: int = 2) -> ChunkVector:
    return ChunkVector(chunk_no=no, text=f"chunk {no}", vector=tuple(float(i) for i in range(dims)))


def test_chapter_embedded_accepts_numbered_chunks_and_no_chunks() -> None:
    assert len(embedded([chunk(0), chunk(1), chunk(2)]).chunks) == 3
    assert embedded([]).chunks == ()


@pytest.mark.parametrize("numbers", [[1], [0, 2], [0, 0], [1, 0]])
def test_chapter_embedded_rejects_bad_chunk_numbering(numbers: list[int]) -> None:
    with pytest.raises(ValidationError, match=r"numbered 0\.\.n-1"):
        embedded([chunk(n) for n in numbers])


def test_chapter_embedded_rejects_wrong_vector_dims() -> None:
    with pytest.raises(ValidationError, match="3 dims, expected 2"):
        embedded([chunk(0), chunk(1, dims=3)])
    with pytest.raises(ValidationError):
        embedded([chunk(0, dims=0)], dimension=0)


def test_chunk_no_must_be_non_negative() -> None:
    with pytest.raises(ValidationError):
        ChunkVector(chunk_no=-1, text="x", vector=(1.0,))


def test_parse_result_round_trips_every_result_type() -> None:
    source = SourceRef(topic="novel-events", partition=2, offset=41)
    results = [
        embedded([chunk(0), chunk(1)], source=source, flow_run_id="run-1", title="t"),
        ChapterRemoved(
            event_id=uuid.uuid4(), novel_id="n1", chapter_id="c1", version=2, source=source
        ),
        NovelRemoved(event_id=uuid.uuid4(), novel_id="n1", version=1, source=source),
    ]
    for result in results:
        parsed = parse_result(result.model_dump_json().encode())
        assert type(parsed) is type(result)
        assert parsed == result
    assert str(source) == "novel-events[2]@41"


def test_parse_result_errors_are_typed() -> None:
    with pytest.raises(BadEncoding):
        parse_result(b"\xff")
    with pytest.raises(MalformedJSON):
        parse_result(b"[]")
    with pytest.raises(UnknownEventType):
        parse_result(raw(payload()))  # an input event is not a result
    bad = json.loads(embedded([chunk(0)]).model_dump_json())
    bad["chunks"][0]["chunk_no"] = 5
    with pytest.raises(SchemaViolation, match="numbered"):
        parse_result(raw(bad))
    with pytest.raises(SchemaViolation):
        parse_result(raw({**bad, "chunks": [], "dimension": 0}))
    lone = embedded([chunk(0)]).model_dump_json().replace('"novel_id":"', '"novel_id":"\\ud800')
    with pytest.raises(BadEncoding):  # the fast JSON path refuses it; the slow one says why
        parse_result(lone.encode())


def test_parse_result_reads_str_and_bytes_alike_and_keeps_every_float() -> None:
    result = embedded([chunk(0), chunk(1)])
    wire = result.model_dump_json()
    assert parse_result(wire) == parse_result(wire.encode()) == result
    assert parse_result(wire).chunks[1].vector == result.chunks[1].vector


def v1_wire(result: ChapterEmbedded, digits: int = 7) -> bytes:
    """``result`` as a schema-version-1 message: vectors as JSON floats rounded as v1 did."""
    obj = json.loads(result.model_dump_json())
    obj["schema_version"] = 1
    for c, original in zip(obj["chunks"], result.chunks, strict=True):
        c["vector"] = [round(x, digits) for x in original.vector]
    return raw(obj)


def test_embedded_v2_carries_vectors_as_base64_float32_little_endian() -> None:
    result = embedded([chunk(0), chunk(1)])
    obj = json.loads(result.model_dump_json())
    assert obj["schema_version"] == 2
    packed = base64.b64decode(obj["chunks"][1]["vector"])
    assert struct.unpack("<2f", packed) == (0.0, 1.0)
    assert result.model_dump()["chunks"][1]["vector"] == (0.0, 1.0)  # python mode: floats


def test_vectors_are_float32_in_memory_so_the_wire_round_trip_is_exact() -> None:
    vector = (0.1, -0.123456789, 1 / 3)
    result = embedded([ChunkVector(chunk_no=0, text="x", vector=vector)], dimension=3)
    assert result.chunks[0].vector == struct.unpack("<3f", struct.pack("<3f", *vector))
    assert parse_result(result.model_dump_json()) == result


def test_a_v1_result_is_upcast_and_reads_the_same_float32_vectors() -> None:
    vector = (0.1234567, -0.5, 0.7654321)
    result = embedded([ChunkVector(chunk_no=0, text="x", vector=vector)], dimension=3)
    parsed = parse_result(v1_wire(result))
    assert isinstance(parsed, ChapterEmbedded) and parsed.schema_version == 2
    assert parsed == result  # the same float32 values whichever version carried them


def test_embedded_v1_to_v2_is_a_pure_step_that_leaves_odd_payloads_to_validation() -> None:
    v1: dict[str, Any] = {
        "event_type": "chapter.embedded",
        "chunks": [{"vector": [1.0, 2]}, {"vector": "x"}],
    }
    v2 = embedded_v1_to_v2(json.loads(json.dumps(v1)))
    assert v2["chunks"][0]["vector"] == base64.b64encode(struct.pack("<2f", 1, 2)).decode()
    assert v2["chunks"][1] == {"vector": "x"}
    assert v1["chunks"][0]["vector"] == [1.0, 2]  # the input is not modified
    assert (
        upcast_result({"event_type": "chapter.removed", "schema_version": 1})["schema_version"] == 1
    )


@pytest.mark.parametrize(
    "vector",
    ["not base64!", base64.b64encode(b"abc").decode(), [1.0, "2"], [True, 1.0], [1e300, 0.0]],
    ids=["not-base64", "not-float32-bytes", "string-in-list", "bool", "overflow"],
)
def test_bad_vectors_are_schema_violations(vector: Any) -> None:
    obj = json.loads(embedded([chunk(0)]).model_dump_json())
    obj["chunks"][0]["vector"] = vector
    with pytest.raises(SchemaViolation, match="vector"):
        parse_result(raw(obj))


def test_a_newer_embedded_schema_version_is_refused() -> None:
    obj = json.loads(embedded([chunk(0)]).model_dump_json())
    obj["schema_version"] = 3
    with pytest.raises(UnsupportedSchemaVersion):
        parse_result(raw(obj))


def test_base64_float32_makes_the_results_topic_much_smaller_per_chunk() -> None:
    """Bytes per chunk of a 384-d result: JSON floats (v1, 7 digits) against base64 (v2)."""
    rng = random.Random(7)
    chunks = []
    for no in range(20):
        v = [rng.gauss(0, 1) for _ in range(384)]
        norm = sum(x * x for x in v) ** 0.5
        chunks.append(
            ChunkVector(chunk_no=no, text="悟空" * 150, vector=tuple(x / norm for x in v))
        )
    result = embedded(chunks, dimension=384)
    v1, v2 = len(v1_wire(result)), len(result.model_dump_json().encode())
    text = sum(len(c.text.encode()) + 20 for c in chunks)  # the texts, as JSON, both ways
    per_v1, per_v2 = (v1 - text) / 20, (v2 - text) / 20
    print(f"\nvector bytes per chunk (384-d): JSON floats {per_v1:.0f}, base64 {per_v2:.0f}")
    assert per_v2 <= 2100  # 384 x 4 bytes x 4/3
    assert per_v2 < 0.5 * per_v1


def test_produced_at_defaults_to_an_aware_now() -> None:
    before = datetime.now(UTC)
    result = NovelRemoved(event_id=uuid.uuid4(), novel_id="n", version=1)
    assert result.produced_at.tzinfo is not None
    assert before <= result.produced_at <= datetime.now(UTC)


# -- JSON schema export --------------------------------------------------------------------


def _mentions(schema: dict[str, Any], literal: str) -> bool:
    return f'"{literal}"' in json.dumps(schema)


def test_event_json_schema_contains_all_event_types() -> None:
    schema = event_json_schema()
    assert isinstance(schema, dict)
    json.dumps(schema)  # serialisable
    for event_type in ("chapter.created", "chapter.updated", "chapter.deleted", "novel.deleted"):
        assert _mentions(schema, event_type), event_type
    assert {"ChapterCreated", "ChapterUpdated", "ChapterDeleted", "NovelDeleted"} <= set(
        schema.get("$defs", {})
    )


def test_result_json_schema_contains_all_result_types() -> None:
    schema = result_json_schema()
    assert isinstance(schema, dict)
    vector = schema["$defs"]["ChunkVector"]["properties"]["vector"]
    assert vector["type"] == "string" and vector["contentEncoding"] == "base64"
    for event_type in ("chapter.embedded", "chapter.removed", "novel.removed"):
        assert _mentions(schema, event_type), event_type
    assert not _mentions(schema, "chapter.created")


def test_public_api_exports_what_it_declares() -> None:
    for name in schemas.__all__:
        assert hasattr(schemas, name), name
