"""``scribe index`` on real Milvus and PostgreSQL (issue 19, hole 9)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agents.decisions import ChapterState
from streams.adapters.milvus.store import MilvusVectorStore
from streams.wiring import open_ledger
from tests.integration.harness import Stack
from tests.ledger_contract import applied

pytestmark = pytest.mark.integration


def test_dropping_a_collection_drops_its_ledger_scope(stack: Stack) -> None:
    """A collection re-created under a dropped one's name inherited its books: the sink
    then skipped results as older than versions the new collection never held."""
    name = f"novel_chunks__drop{uuid.uuid4().hex[:6]}"
    admin = MilvusVectorStore(stack.settings.milvus_url, stack.settings.milvus_collection)

    async def chapter() -> ChapterState | None:
        ledger = await open_ledger(stack.settings, name)
        try:
            return await ledger.chapter("n", "c")
        finally:
            await ledger.close()

    async def create_with_books() -> None:
        await admin.create_collection(name, 384)
        ledger = await open_ledger(stack.settings, name)
        try:
            await ledger.record_applied(applied("n", "c", 9))
        finally:
            await ledger.close()

    try:
        asyncio.run(create_with_books())
        assert asyncio.run(chapter()) is not None
        dropped = stack.scribe("index", "drop", name)
        assert dropped.returncode == 0, dropped.stderr
        assert asyncio.run(chapter()) is None  # a new collection of that name starts empty

        live = stack.scribe("index", "drop", stack.settings.milvus_collection)
        assert live.returncode != 0  # the alias (and its books) are never dropped
    finally:
        asyncio.run(admin.close())
