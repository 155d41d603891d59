"""What the flow submitter answers: shared by the agents' port and Prefect's adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SubmittedRun(BaseModel):
    """Prefect's answer to a submission: the run, and whether it had already ended (an
    existing run found by its idempotency key, whose result went out long ago)."""

    model_config = ConfigDict(frozen=True)

    id: str
    ended: bool = False
