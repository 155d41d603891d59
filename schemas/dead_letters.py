"""The dead-letter envelope: original key and bytes, the reason in Kafka headers."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import ScribeError
from schemas.source import SourceRef
from schemas.target import H_TARGET, Target, TargetField

H_CLASS = "scribe.error.class"
H_REASON = "scribe.error.reason"
H_RETRIABLE = "scribe.error.retriable"
H_TOPIC = "scribe.source.topic"
H_PARTITION = "scribe.source.partition"
H_OFFSET = "scribe.source.offset"
H_AT = "scribe.dead_lettered_at"
H_FLOW_RUN = "scribe.flow_run_id"
#: Set by ``scribe dlq redrive`` on the re-published message: how often it was redriven.
H_REDRIVE = "scribe.redrive"
#: Set by ``scribe dlq redrive``: the original position of the event in the input topic.
#: Ordering decisions (a novel deletion beats what was logged before it) use it, so a
#: redriven event sorts where it was first logged, not at the end of the log.
H_ORIGIN_TOPIC = "scribe.origin.topic"
H_ORIGIN_PARTITION = "scribe.origin.partition"
H_ORIGIN_OFFSET = "scribe.origin.offset"

Headers = list[tuple[str, bytes]]

#: Set on a letter stored with an empty value for a record that had neither key nor value:
#: Kafka clients refuse to send such a record (aiokafka asserts), so the DLQ keeps ``b""``
#: and this header, and readers give the record back as it came (:func:`as_parked`).
H_NULL_VALUE = "scribe.null_value"


def storable(
    key: bytes | None, value: bytes | None, headers: Headers
) -> tuple[bytes | None, Headers]:
    """The value and headers to send for a record (a keyless tombstone becomes ``b""``
    marked by :data:`H_NULL_VALUE`; anything else is sent as it is)."""
    if key is None and value is None:
        return b"", [*headers, (H_NULL_VALUE, b"1")]
    return value, headers


def as_parked(value: bytes | None, headers: Headers) -> bytes | None:
    """The record's value as it came, from what the DLQ stored (see :func:`storable`)."""
    if any(k == H_NULL_VALUE for k, _ in headers):
        return None
    return value


MAX_REASON_BYTES = 4000


def dead_letter_headers(
    source: SourceRef | None,
    error_class: str,
    reason: str,
    retriable: bool,
    flow_run_id: str | None = None,
) -> Headers:
    """Headers that say where a dead letter came from and why it was parked."""
    headers: Headers = [
        (H_CLASS, error_class.encode()),
        (H_REASON, reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]),
        (H_RETRIABLE, b"true" if retriable else b"false"),
        (H_AT, datetime.now(UTC).isoformat().encode()),
    ]
    if source is not None:
        headers += [
            (H_TOPIC, source.topic.encode()),
            (H_PARTITION, str(source.partition).encode()),
            (H_OFFSET, str(source.offset).encode()),
        ]
    if flow_run_id:
        headers.append((H_FLOW_RUN, flow_run_id.encode()))
    return headers


def error_headers(source: SourceRef, error: ScribeError, redrive: int = 0) -> Headers:
    """Headers for an error raised while handling ``source`` (redriven ``redrive`` times)."""
    headers = dead_letter_headers(source, type(error).__name__, error.reason, error.retriable)
    if redrive:
        headers.append((H_REDRIVE, str(redrive).encode()))
    return headers


class DeadLetter(BaseModel):
    """What the headers of one dead letter say (for ``scribe dlq``)."""

    model_config = ConfigDict(frozen=True)

    error_class: str
    reason: str
    retriable: bool
    dead_lettered_at: str | None = None
    source: SourceRef | None = None
    flow_run_id: str | None = None
    redrive: int = 0
    #: The full rebuild whose run failed for good (``scribe.target``): the collection it is
    #: missing from, and the rebuild refuses to switch without it unless forced.
    target: TargetField = Field(None, validate_default=True)  # validated: LIVE

    @classmethod
    def from_headers(cls, headers: Headers) -> DeadLetter:
        """Read the envelope; missing headers read as unknown."""
        h = {k: v.decode("utf-8", "replace") for k, v in headers}
        source = None
        if H_TOPIC in h and H_PARTITION in h and H_OFFSET in h:
            source = SourceRef(
                topic=h[H_TOPIC], partition=int(h[H_PARTITION]), offset=int(h[H_OFFSET])
            )
        return cls(
            error_class=h.get(H_CLASS, "unknown"),
            reason=h.get(H_REASON, ""),
            retriable=h.get(H_RETRIABLE) == "true",
            dead_lettered_at=h.get(H_AT),
            source=source,
            flow_run_id=h.get(H_FLOW_RUN),
            redrive=int(h.get(H_REDRIVE, "0") or 0),
            target=Target.of(h.get(H_TARGET)),
        )


def redrive_headers(letter: DeadLetter) -> Headers:
    """Headers of a redriven event: the redrive count and the original position."""
    headers: Headers = [(H_REDRIVE, str(letter.redrive + 1).encode())]
    if letter.source is not None:
        headers += [
            (H_ORIGIN_TOPIC, letter.source.topic.encode()),
            (H_ORIGIN_PARTITION, str(letter.source.partition).encode()),
            (H_ORIGIN_OFFSET, str(letter.source.offset).encode()),
        ]
    return headers


def message_source(
    topic: str, partition: int, offset: int, timestamp_ms: int | None, headers: Headers
) -> tuple[SourceRef, int]:
    """The position an input message stands for, and how often it was redriven.

    A redriven message stands at its original position (``scribe.origin.*``) when that
    position is in the same topic and partition (offsets order only within one), and is
    read at its own (``read_offset``: retention may have taken the original); at its own
    position otherwise.
    """
    h = {k: v.decode("utf-8", "replace") for k, v in headers}
    try:
        redrive = int(h.get(H_REDRIVE, "0") or 0)
        origin_offset = int(h[H_ORIGIN_OFFSET]) if H_ORIGIN_OFFSET in h else None
        origin_partition = int(h.get(H_ORIGIN_PARTITION, "-1"))
    except ValueError:
        redrive, origin_offset, origin_partition = 0, None, -1
    if (
        origin_offset is not None
        and 0 <= origin_offset < offset
        and h.get(H_ORIGIN_TOPIC) == topic
        and origin_partition == partition
    ):
        return SourceRef(
            topic=topic,
            partition=partition,
            offset=origin_offset,
            timestamp_ms=timestamp_ms,
            read_offset=offset,
        ), redrive
    return SourceRef(
        topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp_ms
    ), redrive
