"""``chapter.processing_failed``: what the platform hears when a chapter cannot be indexed.

Published to ``novel-events.failures`` (key = novel_id) when a flow run has failed for
good (after its retries, or crashed on its last attempt).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import EntityId
from schemas.source import SourceRef


def _now() -> datetime:
    return datetime.now(UTC)


class ChapterProcessingFailed(BaseModel):
    """A chapter version could not be processed; ``reason`` says why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: Literal["chapter.processing_failed"] = "chapter.processing_failed"
    schema_version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4, description="Id of this notification.")
    source_event_id: UUID = Field(description="Id of the chapter event that failed.")
    novel_id: EntityId
    chapter_id: EntityId
    version: int = Field(ge=1, le=2**63 - 1)
    flow_run_id: str | None = None
    reason: str
    source: SourceRef | None = None
    occurred_at: AwareDatetime = Field(default_factory=_now)
