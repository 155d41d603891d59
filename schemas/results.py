"""Messages of the results topic (``novel-events.embeddings``), consumed by the sink.

The results topic is keyed by novel_id like the input, and carries everything the sink
needs to bring Milvus to the state the log describes: embedded chapters and deletions.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from schemas.events import EntityId
from schemas.source import SourceRef
from schemas.target import TargetField


def _now() -> datetime:
    return datetime.now(UTC)


def _float32(values: array[float]) -> tuple[float, ...]:
    if not all(map(math.isfinite, values)):
        raise ValueError("vector values must be finite float32 numbers")
    return tuple(values)


def encode_vector(vector: Iterable[float]) -> str:
    """A vector as base64 of float32 little-endian: the ``chapter.embedded`` v2 wire form."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def decode_vector(value: Any) -> tuple[float, ...]:
    """The float32 values of a base64 vector, or of a list of numbers (in memory, v1).

    Every vector is float32 once validated, however it was given: what the results topic
    carries, what Milvus stores and what a reused vector reads back are the same numbers.
    """
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"vector is not base64: {exc}") from exc
        if len(raw) % 4:
            raise ValueError(f"vector has {len(raw)} bytes, not a whole number of float32")
        packed = array("f")
        packed.frombytes(raw)
        if sys.byteorder != "little":
            packed.byteswap()
        return _float32(packed)
    if isinstance(value, list | tuple) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        return _float32(array("f", value))
    raise ValueError("vector must be base64 float32 little-endian or a list of numbers")


Vector32 = Annotated[
    tuple[float, ...],
    PlainValidator(decode_vector),
    PlainSerializer(encode_vector, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64",
            "description": "The embedding: float32 values, little-endian, base64-encoded.",
        }
    ),
]


class ChunkVector(BaseModel):
    """One chunk of a chapter with its embedding (float32 values; base64 on the wire)."""

    model_config = ConfigDict(frozen=True)

    chunk_no: int = Field(ge=0)
    text: str
    vector: Vector32
    reused: bool = Field(
        False, description="The vector was the index's own for this text, not embedded again."
    )


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Id of the input event this result derives from.")
    novel_id: EntityId
    version: int = Field(ge=1, le=2**63 - 1)
    source: SourceRef | None = None
    target: TargetField = Field(
        None,  # validated: LIVE
        validate_default=True,
        description="Physical collection a full rebuild (scribe replay) writes; "
        "unset: the live index behind the alias.",
    )
    produced_at: AwareDatetime = Field(default_factory=_now)


class ChapterEmbedded(_Result):
    """A chapter version, chunked and embedded: the rows Milvus should hold for it.

    Schema version 2 carries each vector as base64 float32 (version 1: a JSON list of
    floats, 2.4x the bytes and most of the sink's decoding; upcast on read).
    """

    schema_version: Literal[2] = 2  # type: ignore[assignment]
    event_type: Literal["chapter.embedded"] = "chapter.embedded"
    chapter_id: EntityId
    title: str = ""
    model: str
    dimension: int = Field(ge=1)
    pipeline_version: str
    flow_run_id: str | None = None
    chunks: tuple[ChunkVector, ...]

    @model_validator(mode="after")
    def _check_chunks(self) -> ChapterEmbedded:
        for i, chunk in enumerate(self.chunks):
            if chunk.chunk_no != i:
                raise ValueError(f"chunks must be numbered 0..n-1; chunk {i} has {chunk.chunk_no}")
            if len(chunk.vector) != self.dimension:
                raise ValueError(
                    f"chunk {i} has {len(chunk.vector)} dims, expected {self.dimension}"
                )
        return self


class ChapterRemoved(_Result):
    """A chapter was deleted at ``version``: drop its rows, ignore older results."""

    event_type: Literal["chapter.removed"] = "chapter.removed"
    chapter_id: EntityId


class NovelRemoved(_Result):
    """A novel was deleted: drop all its rows, ignore results of events logged before it."""

    event_type: Literal["novel.removed"] = "novel.removed"


class ChapterFailed(_Result):
    """Processing ``version`` failed after the flow's retries (recorded, index untouched)."""

    event_type: Literal["chapter.failed"] = "chapter.failed"
    chapter_id: EntityId
    flow_run_id: str | None = None
    reason: str


ResultEvent: TypeAlias = Annotated[
    ChapterEmbedded | ChapterRemoved | NovelRemoved | ChapterFailed,
    Field(discriminator="event_type"),
]
RESULT_TYPES: tuple[str, ...] = (
    "chapter.embedded",
    "chapter.removed",
    "novel.removed",
    "chapter.failed",
)

#: Schema version per result type (the input events have one version for all types).
RESULT_SCHEMA_VERSIONS: dict[str, int] = {"chapter.embedded": 2}
