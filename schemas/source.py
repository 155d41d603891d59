"""Where a message came from in Kafka."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SourceRef(BaseModel):
    """Topic, partition and offset of the input event an effect derives from.

    Events of one novel share a partition (key = novel_id), so their offsets order them.
    """

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp_ms: int | None = Field(
        None, description="Kafka timestamp of the input message (for end-to-end latency)."
    )

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"
