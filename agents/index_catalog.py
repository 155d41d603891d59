"""Index catalogs: which physical collection and ledger scope a result is written to.

The ledger scope always follows the physical collection: after ``scribe replay`` points
the alias at a rebuilt collection, live results are decided against the rebuilt
collection's own books (its chunk counts, its versions), never the old collection's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from agents.decisions import ChapterState
from agents.ledger import Ledger
from agents.milvus_store import MilvusVectorStore
from agents.ports import Index, IndexCatalog
from agents.vector_store import VectorStore
from schemas import VectorStoreError


class SingleIndex:
    """A catalog of one index: live results only (tools, unit tests, one collection)."""

    def __init__(self, store: VectorStore, ledger: Ledger, name: str = "live") -> None:
        self.index = Index(name, store, ledger)

    async def resolve(self, target: str | None) -> Index | None:
        """The index for live results; nothing for a rebuild's."""
        return self.index if target is None else None

    async def close(self) -> None:
        """The owner closes the store and the ledger."""


class MilvusCatalog:
    """Physical Milvus collections, each with its own ledger scope (the collection name)."""

    def __init__(
        self,
        admin: MilvusVectorStore,
        open_store: Callable[[str], VectorStore],
        open_ledger: Callable[[str], Awaitable[Ledger]],
    ) -> None:
        self._admin = admin
        self._open_store = open_store
        self._open_ledger = open_ledger
        self._indexes: dict[str, Index] = {}
        self._lock = asyncio.Lock()

    async def resolve(self, target: str | None) -> Index | None:
        """See :meth:`agents.ports.IndexCatalog.resolve` (the alias is read every call)."""
        if target is None:
            name = await self._admin.physical()
            if name is None:
                raise VectorStoreError("the index alias does not exist (yet)")
        elif await self._admin.has_collection(target):
            name = target
        else:
            return None
        async with self._lock:
            index = self._indexes.get(name)
            if index is None:
                index = Index(name, self._open_store(name), await self._open_ledger(name))
                self._indexes[name] = index
        return index

    async def close(self) -> None:
        """Close every store and ledger, then the admin client."""
        indexes, self._indexes = list(self._indexes.values()), {}
        for index in indexes:
            close_store = getattr(index.store, "close", None)
            if close_store is not None:
                await close_store()
            await index.ledger.close()
        await self._admin.close()


class LiveLedger:
    """The ledger of the collection the alias points at, looked up on every call."""

    def __init__(self, catalog: IndexCatalog) -> None:
        self._catalog = catalog

    async def _ledger(self) -> Ledger:
        index = await self._catalog.resolve(None)
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

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """See :meth:`agents.ledger.Ledger.delete_novel`."""
        await (await self._ledger()).delete_novel(novel_id, offset)

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

    async def close(self) -> None:
        """The catalog owns the ledgers."""
