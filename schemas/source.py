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
    read_offset: int | None = Field(
        None,
        ge=0,
        description="Where the message's bytes are when not at ``offset``: a redriven copy "
        "stands at its original position (ordering) but is read at its own (retention may "
        "have taken the original).",
    )

    @property
    def stored_at(self) -> int:
        """The offset to read the message's bytes at."""
        return self.offset if self.read_offset is None else self.read_offset

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"
