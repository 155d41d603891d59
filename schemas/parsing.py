"""The one place where raw Kafka bytes become events, or a precise, typed error."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.errors import (
    BadEncoding,
    EventTooLarge,
    InvalidEvent,
    MalformedJSON,
    SchemaViolation,
    UnknownEventType,
)
from schemas.events import EVENT_TYPES, ChapterCreated, ChapterUpdated, NovelEvent
from schemas.results import RESULT_TYPES, ResultEvent
from schemas.upcasting import upcast, upcast_result

DEFAULT_MAX_TEXT_BYTES = 2 * 1024 * 1024

_EVENTS: TypeAdapter[NovelEvent] = TypeAdapter(NovelEvent)
_RESULTS: TypeAdapter[ResultEvent] = TypeAdapter(ResultEvent)


def _load_object(raw: bytes | str | None) -> dict[str, Any]:
    if raw is None:
        raise MalformedJSON("message has no value (a null record, such as a tombstone)")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadEncoding(
                f"message is not valid UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MalformedJSON(f"message is not JSON: {exc}") from exc
    except ValueError as exc:  # e.g. an integer over Python's 4,300-digit conversion limit
        raise MalformedJSON(f"message is JSON that cannot be read: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedJSON(f"message must be a JSON object, got {type(obj).__name__}")
    try:  # JSON may escape lone surrogates (\ud800) that no UTF-8 writer downstream accepts
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadEncoding(
            f"message holds a character that is not valid Unicode: {exc.reason}"
        ) from exc
    return obj


def _violation(exc: ValidationError) -> SchemaViolation:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<event>"
        parts.append(f"{loc}: {err['msg']}")
    return SchemaViolation("; ".join(parts))


def _escaped(exc: Exception) -> InvalidEvent:
    """An error no check above foresaw, as the dead letter it must become: input never
    stops the stream (the worker would read the same record again after every restart)."""
    return SchemaViolation(f"message could not be parsed: {type(exc).__name__}: {exc}")


def parse_event(
    raw: bytes | str | None, *, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
) -> NovelEvent:
    """Parse one ``novel-events`` message; raise only :class:`~schemas.errors.InvalidEvent`
    (whatever the bytes: a property test feeds it arbitrary ones)."""
    try:
        return _parse_event(raw, max_text_bytes)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise _escaped(exc) from exc


def _parse_event(raw: bytes | str | None, max_text_bytes: int) -> NovelEvent:
    obj = _load_object(raw)
    event_type = obj.get("event_type")
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event_type {event_type!r}; expected one of {EVENT_TYPES}")
    obj = upcast(obj)
    try:
        event = _EVENTS.validate_python(obj)
    except ValidationError as exc:
        raise _violation(exc) from exc
    if isinstance(event, ChapterCreated | ChapterUpdated):
        size = len(event.text.encode("utf-8"))
        if size > max_text_bytes:
            raise EventTooLarge(f"chapter text is {size} bytes; the limit is {max_text_bytes}")
    return event


def parse_result(raw: bytes | str | None) -> ResultEvent:
    """Parse one message of the results topic (written by scribe-stream itself).

    Valid messages take pydantic-core's JSON parser straight into the models: a
    ``chapter.embedded`` carries thousands of floats, and ``json.loads`` followed by
    ``validate_python`` costs ~30x more. It rejects what the checks below reject
    (bad UTF-8, lone surrogates); anything it refuses is parsed again the slow way,
    which names the precise error, and upcast first (an older ``schema_version`` fails
    the fast path's version literal). Anyone who may write the topic can send anything,
    so it too raises only :class:`~schemas.errors.InvalidEvent`.
    """
    if raw is not None:
        try:
            return _RESULTS.validate_json(raw)
        except Exception:  # refused: the slow path below names the precise error
            pass
    try:
        return _parse_result_slowly(raw)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise _escaped(exc) from exc


def _parse_result_slowly(raw: bytes | str | None) -> ResultEvent:
    obj = _load_object(raw)
    if obj.get("event_type") not in RESULT_TYPES:
        raise UnknownEventType(f"unknown result type {obj.get('event_type')!r}")
    obj = upcast_result(obj)
    try:
        return _RESULTS.validate_python(obj)
    except ValidationError as exc:
        raise _violation(exc) from exc


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of the input event union."""
    return _EVENTS.json_schema()


def result_json_schema() -> dict[str, Any]:
    """JSON Schema of the results-topic union."""
    return _RESULTS.json_schema()
