"""The Milvus adapter of :class:`agents.ports.ChunkSearch`: dense and BM25 chunk search.

Each call reads the fields of the collection behind the alias first (one cheap describe),
so a search follows the alias across a rebuild's switch and asks an older collection only
for the fields it has.
"""

from __future__ import annotations

from typing import Any

from agents.vector_store import Hit, quote
from schemas import VectorStoreRejected
from streams.adapters.milvus.schema import (
    DENSE_FIELD,
    EXPLAIN_FIELDS,
    SPARSE_FIELD,
    field_names,
    has_sparse,
)
from streams.adapters.milvus.store import MilvusVectorStore

#: Fields every hit reads.
HIT_FIELDS = ("novel_id", "chapter_id", "chapter_version", "chunk_no", "text")


def to_hit(hit: Any, score: float) -> Hit:
    """A pymilvus hit as a :class:`Hit` (explain fields ``None`` where the row has none)."""

    def opt_int(name: str) -> int | None:
        value = hit.get(name)
        return None if value is None else int(value)

    reused = hit.get("reused")
    return Hit(
        id=str(hit.id),
        score=score,
        novel_id=hit.get("novel_id"),
        chapter_id=hit.get("chapter_id"),
        chapter_version=int(hit.get("chapter_version")),
        chunk_no=int(hit.get("chunk_no")),
        text=hit.get("text"),
        source_topic=hit.get("source_topic"),
        source_partition=opt_int("source_partition"),
        source_offset=opt_int("source_offset"),
        flow_run_id=hit.get("flow_run_id"),
        reused=None if reused is None else bool(reused),
    )


class MilvusChunkSearch:
    """Chunk search on the collection behind ``store``'s alias, through its connection."""

    def __init__(self, store: MilvusVectorStore, alias: str) -> None:
        self._store = store
        self._alias = alias

    async def has_sparse(self) -> bool | None:
        """See :meth:`agents.ports.ChunkSearch.has_sparse`."""

        def run(client: Any) -> bool | None:
            if not client.has_collection(self._alias):  # an alias counts as a collection
                return None
            return has_sparse(field_names(client, self._alias))

        return await self._store.run("describe", run)

    async def dense(self, vector: list[float], n: int, novel_id: str | None) -> list[Hit]:
        """See :meth:`agents.ports.ChunkSearch.dense`."""
        return await self._search("search", DENSE_FIELD, vector, n, novel_id)

    async def bm25(self, query: str, n: int, novel_id: str | None) -> list[Hit]:
        """See :meth:`agents.ports.ChunkSearch.bm25`; raises :class:`VectorStoreRejected`
        on a collection without the BM25 field."""
        return await self._search("BM25 search", SPARSE_FIELD, query, n, novel_id)

    async def _search(
        self, what: str, field: str, data: Any, n: int, novel_id: str | None
    ) -> list[Hit]:
        def run(client: Any) -> list[Hit]:
            if not client.has_collection(self._alias):
                return []  # nothing indexed yet
            fields = field_names(client, self._alias)
            if field not in fields:
                raise VectorStoreRejected(f"{self._alias} has no {field} field")
            wanted = [*HIT_FIELDS, *(f for f in EXPLAIN_FIELDS if f in fields)]
            found = client.search(
                self._alias,
                data=[data],
                anns_field=field,
                limit=n,
                output_fields=wanted,
                filter=f"novel_id == {quote(novel_id)}" if novel_id else "",
            )
            # Milvus Lite gives BM25 hits as minus their score, best first; a server gives
            # the score itself: the magnitude is the score either way.
            sign = abs if field == SPARSE_FIELD else float
            return [to_hit(h, sign(float(h.distance))) for h in found[0]]

        return await self._store.run(what, run)
