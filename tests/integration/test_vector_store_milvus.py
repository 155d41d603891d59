"""The vector store, chunk search, vector lookup and index catalog contracts on a real
Milvus Lite server, and nothing else (the catalog's books: SQLite, no server).

This module starts Milvus alone (not the session's whole stack): a contract needs only
the service behind its port. ``tests/vector_store_contract.py`` holds the checks; the
unit tests run them on the in-memory store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.ledger import Ledger
from agents.ports import ChunkSearch
from agents.vector_store import VectorStore
from prefect_bridge.vector_reuse import VectorLookup
from streams.adapters.ledger.sqlite import SqliteLedger
from streams.adapters.milvus.catalog import MilvusCatalog
from streams.adapters.milvus.lookup import MilvusVectorLookup
from streams.adapters.milvus.search import MilvusChunkSearch
from streams.adapters.milvus.store import MilvusVectorStore
from tests.chunk_search_contract import CONTRACT as SEARCH_CONTRACT
from tests.index_catalog_contract import CONTRACT as CATALOG_CONTRACT
from tests.index_catalog_contract import Catalogued
from tests.vector_lookup_contract import CONTRACT as LOOKUP_CONTRACT
from tests.vector_store_contract import CONTRACT, DIM, MODEL

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_milvus_vector_store_contract(
    milvus_url: str, check: Callable[[VectorStore], Awaitable[None]]
) -> None:
    async def run() -> None:
        store = MilvusVectorStore(milvus_url, f"contract_{uuid.uuid4().hex[:8]}")
        try:
            await store.ensure_collection(MODEL, DIM)
            await check(store)
        finally:
            await store.close()

    asyncio.run(run())


@pytest.mark.parametrize("check", SEARCH_CONTRACT, ids=lambda c: c.__name__)
def test_milvus_chunk_search_contract(
    milvus_url: str, check: Callable[[VectorStore, ChunkSearch], Awaitable[None]]
) -> None:
    async def run() -> None:
        alias = f"contract_{uuid.uuid4().hex[:8]}"
        store = MilvusVectorStore(milvus_url, alias)
        try:
            await store.ensure_collection(MODEL, DIM)
            await check(store, MilvusChunkSearch(store, alias))
        finally:
            await store.close()

    asyncio.run(run())


@pytest.mark.parametrize("check", LOOKUP_CONTRACT, ids=lambda c: c.__name__)
def test_milvus_vector_lookup_contract(
    milvus_url: str, check: Callable[[VectorStore, VectorLookup], Awaitable[None]]
) -> None:
    async def run() -> None:
        alias = f"contract_{uuid.uuid4().hex[:8]}"
        store = MilvusVectorStore(milvus_url, alias)
        lookup = MilvusVectorLookup(milvus_url, alias)
        try:
            await store.ensure_collection(MODEL, DIM)
            await check(store, lookup)
        finally:
            lookup.close()
            await store.close()

    asyncio.run(run())


class MilvusCatalogued:
    """MilvusCatalog over an alias of its own, its books in a SQLite file per scope."""

    def __init__(self, url: str, books: Path) -> None:
        alias = f"contract_{uuid.uuid4().hex[:8]}"
        self.admin = MilvusVectorStore(url, alias)

        async def open_scope(name: str) -> Ledger:
            return SqliteLedger(books, scope=name)

        self.catalog = MilvusCatalog(
            MilvusVectorStore(url, alias), lambda name: MilvusVectorStore(url, name), open_scope
        )

    async def create(self, name: str) -> None:
        await self.admin.create_collection(name, DIM)

    async def point(self, name: str) -> None:
        await self.admin.point_alias(name)

    async def drop(self, name: str) -> None:
        await self.admin.drop_collection(name)


@pytest.mark.parametrize("check", CATALOG_CONTRACT, ids=lambda c: c.__name__)
def test_milvus_index_catalog_contract(
    milvus_url: str, tmp_path: Path, check: Callable[[Catalogued], Awaitable[None]]
) -> None:
    async def run() -> None:
        catalogued = MilvusCatalogued(milvus_url, tmp_path / "ledger.sqlite3")
        try:
            await check(catalogued)
        finally:
            await catalogued.catalog.close()
            await catalogued.admin.close()

    asyncio.run(run())
