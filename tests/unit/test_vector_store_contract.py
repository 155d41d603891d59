"""The vector store, chunk search and vector lookup contracts on the in-memory store
(Milvus: integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from agents.ports import ChunkSearch
from agents.vector_store import VectorStore
from prefect_bridge.vector_reuse import VectorLookup
from tests.chunk_search_contract import CONTRACT as SEARCH_CONTRACT
from tests.fakes import InMemoryVectorLookup, InMemoryVectorStore
from tests.vector_lookup_contract import CONTRACT as LOOKUP_CONTRACT
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


@pytest.mark.parametrize("check", LOOKUP_CONTRACT, ids=lambda c: c.__name__)
async def test_vector_lookup_contract(
    check: Callable[[VectorStore, VectorLookup], Awaitable[None]],
) -> None:
    store = InMemoryVectorStore()
    await check(store, InMemoryVectorLookup(store))
