"""The facts ``scribe status`` judges, read from the report its I/O gathered (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class IndexSample:
    """The collection behind the alias: rows counted there (``count(*)``, after every
    upsert and delete) and rows its ledger scope says are indexed, read in that order."""

    collection: str
    rows: int
    expected_rows: int

    @property
    def missing(self) -> int:
        """Rows the ledger promises and the index lacks."""
        return max(0, self.expected_rows - self.rows)


@dataclass(frozen=True)
class OldestPending:
    """The pending chapter that has waited longest, since its row last changed."""

    novel_id: str
    chapter_id: str
    version: int
    since: datetime


@dataclass(frozen=True)
class WaitingResults:
    """A partition of the results topic where the worker's group has lag, and the time
    the oldest result it has not consumed was written (``None``: could not be read)."""

    topic: str
    partition: int
    lag: int
    oldest_at: datetime | None


@dataclass(frozen=True)
class Limits:
    """How long chapters may stay pending and results may wait unapplied."""

    pending_seconds: float
    result_wait_seconds: float


@dataclass(frozen=True)
class StatusFacts:
    """Everything :func:`findings` judges; a section whose service was away stays empty
    (its error is a problem of its own)."""

    now: datetime
    index: tuple[IndexSample, ...] = ()
    stale_pending: int = 0
    oldest_pending: OldestPending | None = None
    waiting: tuple[WaitingResults, ...] = ()


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def facts_of(report: dict[str, Any], results_topic: str) -> StatusFacts:
    """The facts in a report of :func:`streams.commands.status.gather`; a section that
    carries an ``error`` (or is missing) contributes none."""
    index = report.get("index", {})
    ledger = report.get("ledger", {})
    oldest = ledger.get("oldest_pending")
    return StatusFacts(
        now=datetime.fromisoformat(report["checked_at"]),
        index=tuple(
            IndexSample(s["collection"], int(s["rows"]), int(s["expected_rows"]))
            for s in index.get("samples", [])
        ),
        stale_pending=int(ledger.get("stale_pending", 0)),
        oldest_pending=None
        if not oldest
        else OldestPending(
            oldest["novel_id"],
            oldest["chapter_id"],
            int(oldest["version"]),
            datetime.fromisoformat(oldest["since"]),
        ),
        waiting=tuple(
            WaitingResults(results_topic, int(w["partition"]), int(w["lag"]), _when(w["oldest_at"]))
            for w in report.get("kafka", {}).get("results_waiting", [])
        ),
    )
