"""The vector index behind one Protocol: Milvus (any server, Milvus Lite by default) and a fake.

Rows have the primary key ``<novel_id>:<chapter_id>:<chunk_no>``, so writing a chapter is
an ``upsert`` (re-delivery never duplicates) followed by deleting the chapter's chunks
numbered at or past the new count (a shorter edit leaves nothing stale).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas import ChapterEmbedded

MAX_TEXT_CHARS = 8192

#: ``(novel_id, chapter_id, keep)``: drop the chapter's chunks numbered ``keep`` and above.
Trim = tuple[str, str, int]


@dataclass(frozen=True)
class Hit:
    """One chunk found by a search, with where it came from when the index keeps that
    (``None``: a collection of the schema before the explain fields)."""

    id: str
    score: float
    novel_id: str
    chapter_id: str
    chapter_version: int
    chunk_no: int
    text: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    flow_run_id: str | None = None
    reused: bool | None = None


class VectorStore(Protocol):
    """Writes and searches chunk vectors."""

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        """Upsert the chunks of several chapters in one call (no trimming)."""
        ...

    async def trim_chapters(self, trims: Sequence[Trim]) -> None:
        """Drop, per ``(novel_id, chapter_id, keep)``, the chunks numbered ``keep`` and above."""
        ...

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Drop every chunk of the chapter."""
        ...

    async def delete_novel(self, novel_id: str, keep: Sequence[str] = ()) -> None:
        """Drop every chunk of the novel but those of the chapters in ``keep``."""
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


def quote(value: str) -> str:
    """``value`` as a string literal of a Milvus filter expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chunk_rows(result: ChapterEmbedded) -> list[dict[str, Any]]:
    """The index rows of an embedded chapter: one per chunk, with where it came from."""
    source = result.source
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
            "source_topic": source.topic if source else None,
            "source_partition": source.partition if source else None,
            "source_offset": source.offset if source else None,
            "flow_run_id": result.flow_run_id,
            "reused": c.reused,
        }
        for c in result.chunks
    ]
