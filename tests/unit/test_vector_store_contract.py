"""The vector store and chunk search contracts on the in-memory store (Milvus: integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from agents.ports import ChunkSearch
from agents.vector_store import VectorStore
from tests.chunk_search_contract import CONTRACT as SEARCH_CONTRACT
from tests.fakes import InMemoryVectorStore
from tests.vector_store_contract import CONTRACT


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_vector_store_contract(check: Callable[[VectorStore], Awaitable[None]]) -> None:
    await check(InMemoryVectorStore())


@pytest.mark.parametrize("check", SEARCH_CONTRACT, ids=lambda c: c.__name__)
async def test_chunk_search_contract(
    check: Callable[[VectorStore, ChunkSearch], Awaitable[None]],
) -> None:
    store = InMemoryVectorStore()
    await check(store, store)
