"""The Milvus adapter of :class:`~prefect_bridge.vector_reuse.VectorLookup`.

It reads the rows the sink wrote (``agents.vector_store.chunk_rows``): one query per
collection, filtered by novel, chapter and model, returning ``text`` and ``embedding``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from agents.vector_store import quote
from prefect_bridge.embedding import Vector
from schemas import LIVE, Target

#: The sink stores ``text[:8192]`` (agents.vector_store.MAX_TEXT_CHARS): a row this long
#: may hold a cut text, whose vector is not the vector of the text it shows.
STORED_TEXT_LIMIT = 8192


class MilvusVectorLookup:
    """Known vectors from the live collection (the alias) and a rebuild's target."""

    def __init__(self, uri: str, alias: str, token: str | None = None) -> None:
        self._uri = uri
        self._alias = alias
        self._token = token
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            from pymilvus import MilvusClient

            kwargs: dict[str, Any] = {"uri": self._uri, "dedicated": True}
            if self._token:
                kwargs["token"] = self._token
            self._client = MilvusClient(**kwargs)
        return self._client

    def _query(self, collection: str, expr: str) -> list[dict[str, Any]]:
        client = self._connect()
        with contextlib.suppress(Exception):  # after a server restart: load before use
            client.load_collection(collection)
        rows = client.query(collection, filter=expr, output_fields=["text", "model", "embedding"])
        return [dict(r) for r in rows]

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        """See :meth:`VectorLookup.known_vectors`; raises what pymilvus raises."""
        wanted = set(texts)
        expr = (
            f"novel_id == {quote(novel_id)} and chapter_id == {quote(chapter_id)} "
            f"and model == {quote(model)}"
        )
        known: dict[str, Vector] = {}
        for collection in [c for c in (target.collection, self._alias) if c]:
            try:
                rows = await asyncio.to_thread(self._query, collection, expr)
            except Exception:
                self.close()  # reconnect next time
                raise
            for row in rows:
                text = row.get("text")
                if (
                    row.get("model") == model
                    and isinstance(text, str)
                    and text in wanted
                    and len(text) < STORED_TEXT_LIMIT
                    and text not in known
                ):
                    known[text] = [float(x) for x in row["embedding"]]
        return known

    def close(self) -> None:
        """Drop the connection (the next lookup opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
