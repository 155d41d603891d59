"""The vector store and chunk search contracts on a real Milvus Lite server, and nothing else.

This module starts Milvus alone (not the session's whole stack): a contract needs only
the service behind its port. ``tests/vector_store_contract.py`` holds the checks; the
unit tests run them on the in-memory store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from agents.ports import ChunkSearch
from agents.vector_store import VectorStore
from streams.adapters.milvus.search import MilvusChunkSearch
from streams.adapters.milvus.store import MilvusVectorStore
from tests.chunk_search_contract import CONTRACT as SEARCH_CONTRACT
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
