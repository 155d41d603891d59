"""Input events of the ``novel-events`` topic (schema version 1).

Every event is a frozen pydantic model with ``event_type`` and ``schema_version`` literals.
They are parsed at one place, :func:`parse_event`, through one discriminated union; older
schema versions are first brought up to date by the pure upcasters in ``schemas.upcasting``.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

CURRENT_SCHEMA_VERSION = 1

#: Novel and chapter ids: 1-128 characters of letters, digits, ``.``, ``_`` and ``-``.
#: They become parts of Milvus primary keys (``novel:chapter:chunk``) and filter
#: expressions, so separators and quotes are kept out by the contract.
EntityId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class _Event(BaseModel):
    """Fields every input event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    event_id: UUID
    schema_version: Literal[1] = 1
    novel_id: EntityId
    version: Annotated[
        int, Field(ge=1, le=2**63 - 1, description="The chapter's (or novel's) revision.")
    ]
    occurred_at: AwareDatetime


class ChapterCreated(_Event):
    """A chapter was written for the first time."""

    event_type: Literal["chapter.created"] = "chapter.created"
    chapter_id: EntityId
    title: str
    text: str


class ChapterUpdated(_Event):
    """A chapter was revised; ``version`` is the new revision."""

    event_type: Literal["chapter.updated"] = "chapter.updated"
    chapter_id: EntityId
    title: str
    text: str


class ChapterDeleted(_Event):
    """A chapter was deleted at revision ``version``."""

    event_type: Literal["chapter.deleted"] = "chapter.deleted"
    chapter_id: EntityId


class NovelDeleted(_Event):
    """A whole novel was deleted."""

    event_type: Literal["novel.deleted"] = "novel.deleted"


ChapterWritten: TypeAlias = ChapterCreated | ChapterUpdated
NovelEvent: TypeAlias = Annotated[
    ChapterCreated | ChapterUpdated | ChapterDeleted | NovelDeleted,
    Field(discriminator="event_type"),
]

EVENT_TYPES: tuple[str, ...] = (
    "chapter.created",
    "chapter.updated",
    "chapter.deleted",
    "novel.deleted",
)
