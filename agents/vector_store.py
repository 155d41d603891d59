"""The vector index behind one Protocol: Milvus (any server, Milvus Lite by default) and a fake.

Rows have the primary key ``<novel_id>:<chapter_id>:<chunk_no>``, so writing a chapter is
an ``upsert`` (re-delivery never duplicates) followed by deleting the chapter's chunks
numbered at or past the new count (a shorter edit leaves nothing stale).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Protocol

from schemas import ChapterEmbedded, ConfigurationError, VectorStoreError

MAX_TEXT_CHARS = 8192


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    score: float
    novel_id: str
    chapter_id: str
    chapter_version: int
    chunk_no: int
    text: str


class VectorStore(Protocol):
    """Writes and searches chunk vectors."""

    async def write_chapter(self, result: ChapterEmbedded) -> None:
        """Upsert the chapter's chunks and drop its chunks past the new count."""
        ...

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Drop every chunk of the chapter."""
        ...

    async def delete_novel(self, novel_id: str) -> None:
        """Drop every chunk of the novel."""
        ...

    async def flush(self) -> None:
        """Make the writes so far durable and searchable."""
        ...

    async def search(self, vector: list[float], k: int, novel_id: str | None = None) -> list[Hit]:
        """The ``k`` nearest chunks by cosine similarity."""
        ...

    async def count(self, novel_id: str | None = None) -> int:
        """Rows in the index (optionally of one novel)."""
        ...


def row_id(novel_id: str, chapter_id: str, chunk_no: int) -> str:
    """Primary key of a chunk row."""
    return f"{novel_id}:{chapter_id}:{chunk_no}"


def collection_for_model(alias: str, model: str) -> str:
    """Physical collection name for ``model`` behind ``alias`` (letters, digits, ``_``)."""
    return f"{alias}__{re.sub(r'[^0-9A-Za-z]+', '_', model).strip('_').lower()}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rows(result: ChapterEmbedded) -> list[dict[str, Any]]:
    return [
        {
            "id": row_id(result.novel_id, result.chapter_id, c.chunk_no),
            "novel_id": result.novel_id,
            "chapter_id": result.chapter_id,
            "chapter_version": result.version,
            "chunk_no": c.chunk_no,
            "text": c.text[:MAX_TEXT_CHARS],
            "model": result.model,
            "embedding": list(c.vector),
        }
        for c in result.chunks
    ]


class MilvusVectorStore:
    """pymilvus ``MilvusClient`` adapter; blocking calls run in a worker thread."""

    def __init__(self, uri: str, alias: str, token: str | None = None) -> None:
        self._uri = uri
        self._alias = alias
        self._token = token
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            from pymilvus import MilvusClient

            kwargs: dict[str, Any] = {"uri": self._uri}
            if self._token:
                kwargs["token"] = self._token
            self._client = MilvusClient(**kwargs)
        return self._client

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            return getattr(self._connect(), fn)(*args, **kwargs)

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:  # pymilvus raises MilvusException, grpc and OS errors
            self._client = None if "connect" in type(exc).__name__.lower() else self._client
            raise VectorStoreError(f"Milvus {what} failed: {exc}") from exc

    async def ensure_collection(self, model: str, dimension: int) -> str:
        """Create the model's collection and point the alias at it unless the alias exists.

        Returns the physical collection behind the alias. Refuses an alias whose
        collection has another vector size (a different model needs a new collection).
        """
        return str(await asyncio.to_thread(self._ensure, model, dimension))

    def _ensure(self, model: str, dimension: int) -> str:
        from pymilvus import DataType, MilvusClient

        client = self._connect()
        aliases = set(client.list_aliases().get("aliases", []))
        if self._alias in aliases:
            physical = client.describe_alias(self._alias)["collection_name"]
        else:
            physical = collection_for_model(self._alias, model)
            if not client.has_collection(physical):
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
                schema.add_field("novel_id", DataType.VARCHAR, max_length=128)
                schema.add_field("chapter_id", DataType.VARCHAR, max_length=128)
                schema.add_field("chapter_version", DataType.INT64)
                schema.add_field("chunk_no", DataType.INT64)
                schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_CHARS * 4)
                schema.add_field("model", DataType.VARCHAR, max_length=256)
                schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimension)
                index = client.prepare_index_params()
                index.add_index(
                    field_name="embedding", index_type="AUTOINDEX", metric_type="COSINE"
                )
                client.create_collection(physical, schema=schema, index_params=index)
            client.create_alias(physical, self._alias)
        fields = client.describe_collection(physical)["fields"]
        dims = [f["params"].get("dim") for f in fields if f["name"] == "embedding"]
        if dims and int(dims[0]) != dimension:
            raise ConfigurationError(
                f"{self._alias} -> {physical} holds {dims[0]}-d vectors, the embedder makes "
                f"{dimension}-d: reprocess into a new collection (scribe replay --reembed)"
            )
        client.load_collection(physical)
        return str(physical)

    async def write_chapter(self, result: ChapterEmbedded) -> None:
        """Upsert rows, then delete chunks at or past the new count."""
        rows = _rows(result)
        if rows:
            await self._call("upsert", "upsert", self._alias, rows)
        expr = (
            f"novel_id == {_quote(result.novel_id)} and chapter_id == "
            f"{_quote(result.chapter_id)} and chunk_no >= {len(rows)}"
        )
        await self._call("delete", "delete", self._alias, filter=expr)

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Delete by filter."""
        expr = f"novel_id == {_quote(novel_id)} and chapter_id == {_quote(chapter_id)}"
        await self._call("delete", "delete", self._alias, filter=expr)

    async def delete_novel(self, novel_id: str) -> None:
        """Delete by filter."""
        await self._call("delete", "delete", self._alias, filter=f"novel_id == {_quote(novel_id)}")

    async def flush(self) -> None:
        """Seal the segment: durable and fast to search."""
        await self._call("flush", "flush", self._alias)

    async def search(self, vector: list[float], k: int, novel_id: str | None = None) -> list[Hit]:
        """Cosine search with an optional novel filter."""
        fields = ["novel_id", "chapter_id", "chapter_version", "chunk_no", "text"]
        result = await self._call(
            "search",
            "search",
            self._alias,
            data=[vector],
            limit=k,
            output_fields=fields,
            filter=f"novel_id == {_quote(novel_id)}" if novel_id else "",
        )
        return [
            Hit(
                id=str(h.id),
                score=float(h.distance),
                novel_id=h.get("novel_id"),
                chapter_id=h.get("chapter_id"),
                chapter_version=int(h.get("chapter_version")),
                chunk_no=int(h.get("chunk_no")),
                text=h.get("text"),
            )
            for h in result[0]
        ]

    async def count(self, novel_id: str | None = None) -> int:
        """``count(*)`` query."""
        expr = f"novel_id == {_quote(novel_id)}" if novel_id else ""
        rows = await self._call(
            "count", "query", self._alias, filter=expr, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    async def describe(self) -> dict[str, Any]:
        """The physical collection behind the alias, its model(s) and row count."""

        def run() -> dict[str, Any]:
            client = self._connect()
            physical = client.describe_alias(self._alias)["collection_name"]
            rows = client.query(self._alias, filter="", output_fields=["count(*)"])
            sample = client.query(self._alias, filter="", output_fields=["model"], limit=1)
            return {
                "collection": physical,
                "rows": int(rows[0]["count(*)"]),
                "model": sample[0]["model"] if sample else None,
            }

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:
            raise VectorStoreError(f"Milvus describe failed: {exc}") from exc

    async def query_rows(self, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Rows matching a Milvus filter expression (for tools and tests)."""
        rows = await self._call("query", "query", self._alias, filter=expr, output_fields=fields)
        return [dict(r) for r in rows]

    async def close(self) -> None:
        """Close the gRPC channel."""
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)


class InMemoryVectorStore:
    """Fake store for unit tests: a dict of rows, brute-force cosine search."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.flushes = 0

    async def write_chapter(self, result: ChapterEmbedded) -> None:
        """Upsert and trim."""
        for row in _rows(result):
            self.rows[row["id"]] = row
        n = len(result.chunks)
        for key in [
            k
            for k, r in self.rows.items()
            if (r["novel_id"], r["chapter_id"]) == (result.novel_id, result.chapter_id)
            and r["chunk_no"] >= n
        ]:
            del self.rows[key]

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Drop the chapter's rows."""
        for key in [
            k
            for k, r in self.rows.items()
            if (r["novel_id"], r["chapter_id"]) == (novel_id, chapter_id)
        ]:
            del self.rows[key]

    async def delete_novel(self, novel_id: str) -> None:
        """Drop the novel's rows."""
        for key in [k for k, r in self.rows.items() if r["novel_id"] == novel_id]:
            del self.rows[key]

    async def flush(self) -> None:
        """Count flushes."""
        self.flushes += 1

    async def search(self, vector: list[float], k: int, novel_id: str | None = None) -> list[Hit]:
        """Dot product of normalised vectors."""
        scored = [
            (sum(a * b for a, b in zip(vector, r["embedding"], strict=True)), r)
            for r in self.rows.values()
            if novel_id is None or r["novel_id"] == novel_id
        ]
        scored.sort(key=lambda p: -p[0])
        return [
            Hit(
                r["id"],
                s,
                r["novel_id"],
                r["chapter_id"],
                r["chapter_version"],
                r["chunk_no"],
                r["text"],
            )
            for s, r in scored[:k]
        ]

    async def count(self, novel_id: str | None = None) -> int:
        """Rows (of one novel)."""
        return sum(1 for r in self.rows.values() if novel_id is None or r["novel_id"] == novel_id)
