"""Query embedding + vector search (``scribe search``)."""

from __future__ import annotations

import asyncio

from agents.vector_store import Hit
from streams.settings import Settings
from streams.wiring import build_embedder, vector_store


async def run_search(settings: Settings, query: str, k: int, novel: str | None) -> list[Hit]:
    """Embed ``query`` with the configured model and return the ``k`` best chunks."""
    embedder = await asyncio.to_thread(build_embedder, settings)
    vector = await asyncio.to_thread(embedder.embed_query, query)
    store = vector_store(settings)
    try:
        await store.ensure_collection(embedder.name, embedder.dimension)
        return await store.search(vector, k, novel)
    finally:
        await store.close()
