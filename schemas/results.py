"""Messages of the results topic (``novel-events.embeddings``), consumed by the sink.

The results topic is keyed by novel_id like the input, and carries everything the sink
needs to bring Milvus to the state the log describes: embedded chapters and deletions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, TypeAlias
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.events import EntityId
from schemas.source import SourceRef


def _now() -> datetime:
    return datetime.now(UTC)


class ChunkVector(BaseModel):
    """One chunk of a chapter with its embedding."""

    model_config = ConfigDict(frozen=True)

    chunk_no: int = Field(ge=0)
    text: str
    vector: tuple[float, ...]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Id of the input event this result derives from.")
    novel_id: EntityId
    version: int = Field(ge=1, le=2**63 - 1)
    source: SourceRef | None = None
    target: str | None = Field(
        None,
        description="Physical collection a full rebuild (scribe replay) writes; "
        "unset: the live index behind the alias.",
    )
    produced_at: AwareDatetime = Field(default_factory=_now)


class ChapterEmbedded(_Result):
    """A chapter version, chunked and embedded: the rows Milvus should hold for it."""

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
