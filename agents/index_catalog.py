"""Index catalogs: which physical collection and ledger scope a result is written to.

The ledger scope always follows the physical collection: after ``scribe replay`` points
the alias at a rebuilt collection, live results are decided against the rebuilt
collection's own books (its chunk counts, its versions), never the old collection's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agents.decisions import ChapterState
from agents.ledger import Ledger, LedgerSummary
from agents.ports import Index, IndexCatalog
from agents.vector_store import VectorStore
from schemas import LIVE, ConfigurationError, Target


class SingleIndex:
    """A catalog of one index: live results only (tools, unit tests, one collection)."""

    def __init__(self, store: VectorStore, ledger: Ledger, name: str = "live") -> None:
        self.index = Index(name, store, ledger)

    async def resolve(self, target: Target) -> Index | None:
        """The index for live results; nothing for a rebuild's."""
        return self.index if target.live else None

    async def close(self) -> None:
        """The owner closes the store and the ledger."""


class LiveLedger:
    """The ledger of the collection the alias points at, looked up on every call."""

    def __init__(self, catalog: IndexCatalog) -> None:
        self._catalog = catalog

    async def _ledger(self) -> Ledger:
        index = await self._catalog.resolve(LIVE)
        assert index is not None  # the live index always resolves (or raises)
        return index.ledger

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """See :meth:`agents.ledger.Ledger.chapter`."""
        return await (await self._ledger()).chapter(novel_id, chapter_id)

    async def chapters_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ChapterState]:
        """See :meth:`agents.ledger.Ledger.chapters_by_key`."""
        return await (await self._ledger()).chapters_by_key(keys)

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """See :meth:`agents.ledger.Ledger.novel_deleted_offset`."""
        return await (await self._ledger()).novel_deleted_offset(novel_id)

    async def record_applied(self, state: ChapterState) -> None:
        """See :meth:`agents.ledger.Ledger.record_applied`."""
        await (await self._ledger()).record_applied(state)

    async def record_applied_many(self, states: Sequence[ChapterState]) -> None:
        """See :meth:`agents.ledger.Ledger.record_applied_many`."""
        await (await self._ledger()).record_applied_many(states)

    async def record_submitted(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str
    ) -> None:
        """See :meth:`agents.ledger.Ledger.record_submitted`."""
        await (await self._ledger()).record_submitted(novel_id, chapter_id, version, flow_run_id)

    async def record_failed(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str | None, error: str
    ) -> None:
        """See :meth:`agents.ledger.Ledger.record_failed`."""
        await (await self._ledger()).record_failed(
            novel_id, chapter_id, version, flow_run_id, error
        )

    async def chapters_of_novel(self, novel_id: str) -> list[ChapterState]:
        """See :meth:`agents.ledger.Ledger.chapters_of_novel`."""
        return await (await self._ledger()).chapters_of_novel(novel_id)

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """See :meth:`agents.ledger.Ledger.delete_novel`."""
        await (await self._ledger()).delete_novel(novel_id, offset)

    async def drop_scope(self) -> None:
        """Refused: the books of the collection behind the alias are never dropped."""
        raise ConfigurationError("the ledger scope of the live collection is never dropped")

    async def removals_applied(self, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`agents.ledger.Ledger.removals_applied`."""
        return await (await self._ledger()).removals_applied(event_ids)

    async def record_removals(self, event_ids: Sequence[str]) -> None:
        """See :meth:`agents.ledger.Ledger.record_removals`."""
        await (await self._ledger()).record_removals(event_ids)

    async def counts(self) -> dict[str, int]:
        """See :meth:`agents.ledger.Ledger.counts`."""
        return await (await self._ledger()).counts()

    async def chapters(self, status: str, limit: int = 50) -> list[ChapterState]:
        """See :meth:`agents.ledger.Ledger.chapters`."""
        return await (await self._ledger()).chapters(status, limit)

    async def summary(self, pending_before: datetime) -> LedgerSummary:
        """Delegate."""
        return await (await self._ledger()).summary(pending_before)

    async def close(self) -> None:
        """The catalog owns the ledgers."""
