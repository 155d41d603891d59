"""The Milvus adapter of the vector store (any Milvus server; Milvus Lite by default)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agents.vector_store import (
    Hit,
    Trim,
    chunk_rows,
    collection_for_model,
    quote,
)
from schemas import (
    ChapterEmbedded,
    ConfigurationError,
    ScribeError,
    VectorStoreError,
    VectorStoreRejected,
)
from streams.adapters.milvus.schema import create_collection, field_names, fit_rows

T = TypeVar("T")

#: Chapters per trim ``delete``: their filters are OR-ed into one expression.
TRIMS_PER_DELETE = 64

#: Status codes with which Milvus rejects the request itself: IllegalArgument (5 in
#: Milvus' legacy enum, 6 as Milvus Lite sends it), IllegalDimension (7) and
#: ParameterInvalid (1100, Milvus 2.3+).
REJECTED_CODES = frozenset({5, 6, 7, 1100})


def milvus_error(what: str, exc: BaseException) -> ScribeError:
    """The scribe error for a failed Milvus call, decided here at the adapter's edge.

    The request itself is wrong (a vector of another dimension, a value over a field's
    limit, a bad filter): :class:`VectorStoreRejected`, not retriable. Anything else (the
    server away or restarting, a timeout, an error the server marks retriable):
    :class:`VectorStoreError`, retried with backoff.
    """
    from pymilvus.exceptions import (
        ConnectError,
        DataNotMatchException,
        DataTypeNotMatchException,
        MilvusException,
        MilvusUnavailableException,
        ParamError,
        PrimaryKeyException,
    )

    if isinstance(exc, MilvusException) and not isinstance(
        exc, ConnectError | MilvusUnavailableException
    ):
        invalid = isinstance(
            exc,
            ParamError | DataNotMatchException | DataTypeNotMatchException | PrimaryKeyException,
        )
        if exc.is_input_error or invalid or (not exc.retriable and exc.code in REJECTED_CODES):
            return VectorStoreRejected(f"Milvus {what} rejected: {exc.message}")
    return VectorStoreError(f"Milvus {what} failed: {exc}")


class MilvusVectorStore:
    """pymilvus ``MilvusClient`` adapter; blocking calls run in a worker thread."""

    def __init__(
        self,
        uri: str,
        alias: str,
        token: str | None = None,
        sparse: bool = True,
        explain: bool = True,
    ) -> None:
        """``sparse`` and ``explain``: the fields of the collections it creates (see
        :func:`~streams.adapters.milvus.schema.create_collection`)."""
        self._uri = uri
        self._alias = alias
        self._token = token
        self._sparse = sparse
        self._explain = explain
        self._client: Any = None
        self._fields: frozenset[str] | None = None

    def _connect(self) -> Any:
        if self._client is None:
            from pymilvus import MilvusClient

            # A channel of its own: pymilvus shares one per URI by default, and a shared
            # channel that the server closed while idle ("too many pings") fails every
            # client of the process; our own can be dropped and reopened on error.
            kwargs: dict[str, Any] = {"uri": self._uri, "dedicated": True}
            if self._token:
                kwargs["token"] = self._token
            client = MilvusClient(**kwargs)
            with contextlib.suppress(Exception):  # after a server restart: load before use
                if client.has_collection(self._alias):
                    client.load_collection(self._alias)
            self._client = client
        return self._client

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            return getattr(self._connect(), fn)(*args, **kwargs)

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:  # pymilvus raises MilvusException, grpc and OS errors
            error = milvus_error(what, exc)
            if error.retriable:
                self._reset()
            raise error from exc

    def _reset(self) -> None:
        """Drop the connection after an error: the next call reconnects (and reloads)."""
        self._fields = None
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def ensure_collection(self, model: str, dimension: int) -> str:
        """Create the model's collection and point the alias at it unless the alias exists.

        Returns the physical collection behind the alias. Refuses an alias whose
        collection has another vector size (a different model needs a new collection).
        """
        physical: str = await self._call_fn(
            "ensure collection", lambda: self._ensure(model, dimension)
        )
        return physical

    def _ensure(self, model: str, dimension: int) -> str:
        client = self._connect()
        if self._alias in set(client.list_aliases().get("aliases", [])):
            physical = str(client.describe_alias(self._alias)["collection_name"])
        else:
            physical = collection_for_model(self._alias, model)
            try:
                self._create(physical, dimension)
                client.create_alias(physical, self._alias)
            except Exception:
                # Another process (a second worker, a replay) created them first: use its.
                if self._alias not in set(client.list_aliases().get("aliases", [])):
                    raise
                physical = str(client.describe_alias(self._alias)["collection_name"])
        self._check_dimension(physical, dimension)
        client.load_collection(physical)
        return physical

    def _create(self, name: str, dimension: int) -> None:
        create_collection(
            self._connect(), name, dimension, sparse=self._sparse, explain=self._explain
        )

    def _check_dimension(self, physical: str, dimension: int) -> None:
        fields = self._connect().describe_collection(physical)["fields"]
        dims = [f["params"].get("dim") for f in fields if f["name"] == "embedding"]
        if dims and int(dims[0]) != dimension:
            raise ConfigurationError(
                f"{self._alias} -> {physical} holds {dims[0]}-d vectors, the embedder makes "
                f"{dimension}-d: rebuild the whole index with the new model (scribe replay "
                "--reembed, without --novel or --from)"
            )

    async def create_collection(self, name: str, dimension: int) -> None:
        """Create a physical collection with the chunk schema (for a rebuild), loaded."""

        def run() -> None:
            self._create(name, dimension)
            self._connect().load_collection(name)

        await self._call_fn("create collection", run)

    async def point_alias(self, physical: str) -> str | None:
        """Point the alias at ``physical`` atomically; return the collection it left."""

        def run() -> str | None:
            client = self._connect()
            if self._alias in set(client.list_aliases().get("aliases", [])):
                old = str(client.describe_alias(self._alias)["collection_name"])
                client.alter_alias(physical, self._alias)
                return old
            client.create_alias(physical, self._alias)
            return None

        result: str | None = await self._call_fn("alter alias", run)
        return result

    async def collections(self) -> list[dict[str, Any]]:
        """Every collection with its aliases and row count.

        Counts come from the collection statistics, so listing never loads a collection
        into Milvus' memory (an old collection kept for a rollback stays released).
        """

        def run() -> list[dict[str, Any]]:
            client = self._connect()
            out = []
            for name in sorted(client.list_collections()):
                aliases = client.list_aliases(collection_name=name).get("aliases", [])
                rows = int(client.get_collection_stats(name).get("row_count", 0))
                out.append({"name": name, "aliases": list(aliases), "rows": rows})
            return out

        result: list[dict[str, Any]] = await self._call_fn("list collections", run)
        return result

    async def physical(self) -> str | None:
        """The collection the alias points at now (``None`` while there is no alias)."""

        def run() -> str | None:
            client = self._connect()
            if self._alias not in set(client.list_aliases().get("aliases", [])):
                return None
            return str(client.describe_alias(self._alias)["collection_name"])

        result: str | None = await self._call_fn("describe alias", run)
        return result

    async def has_collection(self, name: str) -> bool:
        """Whether a physical collection of that name exists."""
        found: bool = await self._call_fn(
            "has collection", lambda: bool(self._connect().has_collection(name))
        )
        return found

    async def drop_collection(self, name: str) -> None:
        """Drop a collection no alias points at."""

        def run() -> None:
            client = self._connect()
            aliases = client.list_aliases(collection_name=name).get("aliases", [])
            if aliases:
                raise ConfigurationError(f"{name} is in use by alias {', '.join(aliases)}")
            client.drop_collection(name)

        await self._call_fn("drop collection", run)

    async def run(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(client)`` in a worker thread, its failure mapped by :func:`milvus_error`
        (the search adapter's way in, sharing this store's connection)."""
        result: T = await self._call_fn(what, lambda: fn(self._connect()))
        return result

    async def _call_fn(self, what: str, fn: Any) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except ScribeError:  # decided already (a configuration error, a rejected request)
            raise
        except Exception as exc:
            error = milvus_error(what, exc)
            if error.retriable:
                self._reset()
            raise error from exc

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        """One upsert for the chunks of every chapter given."""
        rows = [row for result in results for row in chunk_rows(result)]
        if not rows:
            return

        def run() -> None:
            client = self._connect()
            if self._fields is None:
                self._fields = field_names(client, self._alias)
            client.upsert(self._alias, fit_rows(rows, self._fields))

        try:
            await self._call_fn("upsert", run)
        except VectorStoreRejected:
            self._fields = None  # the alias may have moved to a collection of another schema
            raise

    async def trim_chapters(self, trims: Sequence[Trim]) -> None:
        """Delete each chapter's chunks numbered ``keep`` and above.

        One ``delete`` per :data:`TRIMS_PER_DELETE` chapters, their filters OR-ed: a delete
        by filter costs a scan, so one per chapter made trims the sink's largest cost.
        """
        for start in range(0, len(trims), TRIMS_PER_DELETE):
            expr = " or ".join(
                f"(novel_id == {quote(novel_id)} and chapter_id == {quote(chapter_id)}"
                f" and chunk_no >= {keep})"
                for novel_id, chapter_id, keep in trims[start : start + TRIMS_PER_DELETE]
            )
            await self._call("delete", "delete", self._alias, filter=expr)

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Delete by filter."""
        expr = f"novel_id == {quote(novel_id)} and chapter_id == {quote(chapter_id)}"
        await self._call("delete", "delete", self._alias, filter=expr)

    async def delete_novel(self, novel_id: str, keep: Sequence[str] = ()) -> None:
        """Delete by filter, but the chapters in ``keep``."""
        expr = f"novel_id == {quote(novel_id)}"
        if keep:
            expr += f" and chapter_id not in [{', '.join(quote(c) for c in keep)}]"
        await self._call("delete", "delete", self._alias, filter=expr)

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
            filter=f"novel_id == {quote(novel_id)}" if novel_id else "",
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
        expr = f"novel_id == {quote(novel_id)}" if novel_id else ""
        rows = await self._call(
            "count", "query", self._alias, filter=expr, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    async def shape(self) -> tuple[str, str | None, int]:
        """The collection behind the alias, the model of its rows (``None`` while it is
        empty) and its vector dimension: what a resink rebuilds, with no model loaded."""

        def run() -> tuple[str, str | None, int]:
            client = self._connect()
            if self._alias not in set(client.list_aliases().get("aliases", [])):
                raise ConfigurationError(f"there is no index {self._alias} to rebuild yet")
            physical = str(client.describe_alias(self._alias)["collection_name"])
            fields = client.describe_collection(physical)["fields"]
            dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == "embedding")
            client.load_collection(physical)
            sample = client.query(physical, filter="", output_fields=["model"], limit=1)
            return physical, (str(sample[0]["model"]) if sample else None), dim

        found: tuple[str, str | None, int] = await self._call_fn("describe index", run)
        return found

    async def describe(self) -> dict[str, Any]:
        """The physical collection behind the alias, its model and its rows (``count(*)``)."""

        def run() -> dict[str, Any]:
            client = self._connect()
            physical = client.describe_alias(self._alias)["collection_name"]
            # Of that collection (the alias may move meanwhile), after every write so far:
            # not the statistics, which count upserted and deleted rows until a compaction.
            rows = client.query(
                physical, filter="", output_fields=["count(*)"], consistency_level="Strong"
            )
            sample = client.query(physical, filter="", output_fields=["model"], limit=1)
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
