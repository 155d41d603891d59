"""Contract every VectorStore adapter must meet: run against the fake and Milvus.

Each ``check_*`` coroutine takes a fresh, empty store for vectors of :data:`DIM`
dimensions. ``tests/unit/test_vector_store_contract.py`` runs them on the in-memory store,
``tests/integration/test_vector_store_milvus.py`` on a real Milvus Lite server (that
service alone). Writes are read back after :meth:`VectorStore.flush`, as the sink does.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable

from agents.vector_store import VectorStore
from schemas import ChapterEmbedded, ChunkVector

DIM = 8
MODEL = "contract-model"


def unit(axis: int, lean: float = 0.0) -> tuple[float, ...]:
    """A unit vector along ``axis``, leaning ``lean`` towards the next axis."""
    v = [0.0] * DIM
    v[axis % DIM] = 1.0
    v[(axis + 1) % DIM] = lean
    norm = math.sqrt(sum(x * x for x in v))
    return tuple(x / norm for x in v)


def chapter(
    novel: str, chapter_id: str, version: int, chunks: int, axis: int = 0
) -> ChapterEmbedded:
    """A result of ``chunks`` chunks whose vectors point along ``axis`` (chunk i leans i)."""
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id=chapter_id,
        version=version,
        model=MODEL,
        dimension=DIM,
        pipeline_version="contract",
        chunks=tuple(
            ChunkVector(
                chunk_no=i,
                text=f"{chapter_id} v{version} #{i}",
                vector=unit(axis, lean=0.1 * i),
            )
            for i in range(chunks)
        ),
    )


async def _chunks(store: VectorStore, novel: str) -> set[tuple[str, int, int]]:
    """(chapter, chunk_no, version) of every row of ``novel``, through search."""
    hits = await store.search(list(unit(0)), 100, novel_id=novel)
    return {(h.chapter_id, h.chunk_no, h.chapter_version) for h in hits}


async def check_an_upsert_again_never_duplicates(store: VectorStore) -> None:
    await store.upsert_chapters([chapter("n1", "c1", 1, 3)])
    await store.upsert_chapters([chapter("n1", "c1", 1, 3)])
    await store.flush()
    assert await store.count("n1") == 3
    assert await store.count() == 3


async def check_a_newer_version_replaces_the_rows_it_shares(store: VectorStore) -> None:
    await store.upsert_chapters([chapter("n1", "c1", 1, 3), chapter("n1", "c2", 1, 1)])
    await store.upsert_chapters([chapter("n1", "c1", 2, 3)])
    await store.flush()
    assert await _chunks(store, "n1") == {("c1", i, 2) for i in range(3)} | {("c2", 0, 1)}


async def check_a_trim_drops_the_chunks_at_and_past_keep(store: VectorStore) -> None:
    await store.upsert_chapters([chapter("n1", "c1", 1, 4), chapter("n1", "c2", 1, 3)])
    await store.trim_chapters([("n1", "c1", 2), ("n1", "c2", 3)])
    await store.flush()
    assert await _chunks(store, "n1") == {("c1", 0, 1), ("c1", 1, 1)} | {
        ("c2", i, 1) for i in range(3)
    }


async def check_a_chapter_deletion_leaves_its_neighbours(store: VectorStore) -> None:
    await store.upsert_chapters([chapter("n1", "c1", 1, 2), chapter("n1", "c2", 1, 2)])
    await store.upsert_chapters([chapter("n2", "c1", 1, 1)])
    await store.delete_chapter("n1", "c1")
    await store.flush()
    assert await _chunks(store, "n1") == {("c2", 0, 1), ("c2", 1, 1)}
    assert await store.count("n2") == 1


async def check_a_novel_deletion_keeps_only_the_chapters_named(store: VectorStore) -> None:
    await store.upsert_chapters([chapter("n1", c, 1, 2) for c in ("c1", "c2", "c3")])
    await store.upsert_chapters([chapter("n2", "c1", 1, 1)])
    await store.delete_novel("n1", keep=["c3"])
    await store.flush()
    assert await _chunks(store, "n1") == {("c3", 0, 1), ("c3", 1, 1)}
    await store.delete_novel("n1")
    await store.flush()
    assert await store.count("n1") == 0
    assert await store.count() == 1


async def check_search_ranks_the_nearest_first_within_a_novel(store: VectorStore) -> None:
    await store.upsert_chapters(
        [chapter("n1", "near", 1, 1, axis=3), chapter("n1", "far", 1, 1, axis=5)]
    )
    await store.upsert_chapters([chapter("n2", "near", 1, 1, axis=3)])
    await store.flush()
    hits = await store.search(list(unit(3, lean=0.05)), 2, novel_id="n1")
    assert [(h.novel_id, h.chapter_id) for h in hits] == [("n1", "near"), ("n1", "far")]
    assert hits[0].score > hits[1].score
    assert hits[0].text == "near v1 #0"
    everywhere = await store.search(list(unit(3)), 1)
    assert [h.chapter_id for h in everywhere] == ["near"]


CONTRACT: list[Callable[[VectorStore], Awaitable[None]]] = [
    check_an_upsert_again_never_duplicates,
    check_a_newer_version_replaces_the_rows_it_shares,
    check_a_trim_drops_the_chunks_at_and_past_keep,
    check_a_chapter_deletion_leaves_its_neighbours,
    check_a_novel_deletion_keeps_only_the_chapters_named,
    check_search_ranks_the_nearest_first_within_a_novel,
]
