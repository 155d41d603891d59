"""The chapter ledger: per chapter, the newest version seen, applied, failed.

It is the read model that makes the sink idempotent and order-proof: every result is
checked against it (``agents.decisions.decide_result``) before it touches the index, and
recorded in it after the index write is durable. The chapter agent records what it
submitted, so ``scribe status`` can tell pending from indexed. Kafka stays the source of
truth: a lost ledger is rebuilt by replaying the results topic (``scribe replay --resink``).

A ledger is bound to a *scope*, the index it describes (the live alias, or the physical
collection a replay builds), so a rebuild keeps its own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from agents.decisions import ChapterState
from schemas import ServiceUnavailable


class LedgerUnavailable(ServiceUnavailable):
    """The ledger's database cannot be used right now (retriable)."""


@dataclass(frozen=True)
class LedgerSummary:
    """What ``scribe status`` holds the index and the flows to, for one scope.

    ``indexed_rows`` is the number of chunk rows the index should hold: the chunk count of
    every chapter whose applied version is not a deletion (a pending or failed chapter
    still has the rows of its older applied version). ``stale_pending`` counts the
    pending chapters last touched before the cutoff asked for; ``oldest_pending`` is the
    pending chapter waiting longest (``None`` when nothing is pending).
    """

    indexed_rows: int
    stale_pending: int
    oldest_pending: ChapterState | None


class Ledger(Protocol):
    """Storage of :class:`ChapterState` rows and novel tombstones, for one scope."""

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """The chapter's row, if any."""
        ...

    async def chapters_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ChapterState]:
        """The rows of those ``(novel_id, chapter_id)`` keys that exist (one round trip)."""
        ...

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Source offset of the novel's newest applied deletion, if any."""
        ...

    async def record_applied(self, state: ChapterState) -> None:
        """The index now holds ``state`` (embedded or deleted at ``state.version``)."""
        ...

    async def record_applied_many(self, states: Sequence[ChapterState]) -> None:
        """:meth:`record_applied` for each state, in order, in one transaction."""
        ...

    async def record_submitted(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str
    ) -> None:
        """A flow run for ``version`` was accepted by Prefect."""
        ...

    async def record_failed(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str | None, error: str
    ) -> None:
        """Processing ``version`` failed for good (after the flow's retries)."""
        ...

    async def chapters_of_novel(self, novel_id: str) -> list[ChapterState]:
        """Every row of the novel's chapters."""
        ...

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop the novel's chapter rows logged before ``offset`` (see
        :func:`agents.decisions.outlives_novel_deletion`) and record its tombstone there."""
        ...

    async def removals_applied(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these events (by id) are settled: deletions applied already, and writes
        a deletion of their novel left out (the chapter agent's)."""
        ...

    async def record_removals(self, event_ids: Sequence[str]) -> None:
        """Remember events as settled (deletions applied, writes a deletion left out): a
        re-sent copy must not apply again."""
        ...

    async def drop_scope(self) -> None:
        """Forget every row, tombstone and removal of this scope, in one transaction.

        Its collection was dropped (``scribe index drop``): a collection created later
        under the same name must not inherit its books (the sink would skip its results
        as older than versions it never held)."""
        ...

    async def counts(self) -> dict[str, int]:
        """Chapters by status: pending, indexed, deleted, failed."""
        ...

    async def chapters(self, status: str, limit: int = 50) -> list[ChapterState]:
        """Newest-first rows in ``status``."""
        ...

    async def summary(self, pending_before: datetime) -> LedgerSummary:
        """Rows the index should hold, and pending chapters older than ``pending_before``."""
        ...

    async def close(self) -> None:
        """Release the storage."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


def applies_over(new: ChapterState, old: ChapterState) -> bool:
    """Whether recording ``new`` may replace ``old``: never backwards in version, and at
    equal versions an embedding never undoes a delete (the ledgers' compare-and-set)."""
    if new.version != old.version:
        return new.version > old.version
    return new.deleted or not old.deleted
