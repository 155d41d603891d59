"""``scribe index``: the physical collections behind the alias, and their books."""

from __future__ import annotations

from schemas import ConfigurationError
from streams.settings import Settings
from streams.wiring import open_ledger, vector_store


async def drop(settings: Settings, name: str) -> bool:
    """Drop collection ``name`` and then its ledger scope; whether the collection existed.

    The scope goes after the collection (a refused drop keeps its books) and also when
    the collection is gone already, so running the command again finishes a drop that
    stopped between the two. The collection behind the alias is refused, books included.
    """
    store = vector_store(settings)
    try:
        live = await store.physical() or settings.milvus_collection
        if name in (live, settings.milvus_collection):
            raise ConfigurationError(
                f"{name} is the live index (alias {settings.milvus_collection} -> {live});"
                " it is never dropped"
            )
        existed = await store.has_collection(name)
        if existed:
            await store.drop_collection(name)
    finally:
        await store.close()
    ledger = await open_ledger(settings, name)
    try:
        await ledger.drop_scope()
    finally:
        await ledger.close()
    return existed
