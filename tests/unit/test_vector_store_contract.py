"""The vector store contract on the in-memory store (Milvus: integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from agents.vector_store import VectorStore
from tests.fakes import InMemoryVectorStore
from tests.vector_store_contract import CONTRACT


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_vector_store_contract(check: Callable[[VectorStore], Awaitable[None]]) -> None:
    await check(InMemoryVectorStore())
