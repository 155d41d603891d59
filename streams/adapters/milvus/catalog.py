"""The index catalog on Milvus: a store and a ledger scope per physical collection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agents.ledger import Ledger
from agents.ports import Index
from agents.vector_store import VectorStore
from schemas import Target, VectorStoreError
from streams.adapters.milvus.store import MilvusVectorStore


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

    async def resolve(self, target: Target) -> Index | None:
        """See :meth:`agents.ports.IndexCatalog.resolve` (the alias is read every call)."""
        if target.collection is None:
            name = await self._admin.physical()
            if name is None:
                raise VectorStoreError("the index alias does not exist (yet)")
        elif await self._admin.has_collection(target.collection):
            name = target.collection
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
