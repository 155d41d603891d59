"""Contract every ChunkSearch adapter must meet: run against the fake and Milvus.

Each ``check_*`` coroutine takes a fresh, empty store and the search over the same index
(``tests/vector_store_contract.DIM``-dimensional vectors); rows are written through the
store and flushed, as the sink writes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from agents.ports import ChunkSearch
from agents.vector_store import VectorStore
from schemas import ChapterEmbedded, ChunkVector, SourceRef
from tests.vector_store_contract import DIM, MODEL, unit

TEXTS = {
    "c1": ["猴王在花果山水帘洞里称王，众猴拜他为美猴王。", "花果山上桃树成林。"],
    "c2": ["祖师须菩提夜里传他长生之道和七十二般变化。", "悟空学会了筋斗云。"],
    "c3": ["龙王无奈，只得献出海底的定海神针。", "那铁棒能大能小，随心变化。"],
}


def written(
    novel: str, chapter_id: str, axis: int, run: str | None = None, reused: bool = False
) -> ChapterEmbedded:
    """Chapter ``chapter_id`` of :data:`TEXTS` as the flow publishes it."""
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id=chapter_id,
        version=2,
        model=MODEL,
        dimension=DIM,
        pipeline_version="contract",
        flow_run_id=run,
        source=SourceRef(topic="novel-events", partition=1, offset=40 + axis),
        chunks=tuple(
            ChunkVector(chunk_no=i, text=t, vector=unit(axis, 0.1 * i), reused=reused and i == 0)
            for i, t in enumerate(TEXTS[chapter_id])
        ),
    )


async def _write(store: VectorStore, novel: str) -> None:
    await store.upsert_chapters([written(novel, c, axis) for axis, c in enumerate(TEXTS)])
    await store.flush()


async def check_a_new_index_has_the_bm25_field(store: VectorStore, search: ChunkSearch) -> None:
    assert await search.has_sparse()


async def check_bm25_ranks_the_one_chapter_with_a_name_first(
    store: VectorStore, search: ChunkSearch
) -> None:
    await _write(store, "n1")
    hits = await search.bm25("须菩提", 10, None)
    assert hits and hits[0].chapter_id == "c2", hits
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def check_both_retrievers_keep_to_the_novel_asked(
    store: VectorStore, search: ChunkSearch
) -> None:
    await _write(store, "n1")
    await _write(store, "n2")
    assert {h.novel_id for h in await search.bm25("花果山", 10, "n2")} == {"n2"}
    assert {h.novel_id for h in await search.dense(list(unit(0)), 10, "n2")} == {"n2"}
    assert await search.bm25("花果山", 10, "absent") == []


async def check_a_hit_says_where_its_row_came_from(store: VectorStore, search: ChunkSearch) -> None:
    await store.upsert_chapters([written("n1", "c3", 2, run="run-7", reused=True)])
    await store.flush()
    hits = {h.chunk_no: h for h in await search.dense(list(unit(2)), 10, "n1")}
    assert hits[0].chapter_version == 2 and hits[0].text == TEXTS["c3"][0]
    assert (hits[0].source_topic, hits[0].source_partition, hits[0].source_offset) == (
        "novel-events",
        1,
        42,
    )
    assert hits[0].flow_run_id == "run-7"
    assert (hits[0].reused, hits[1].reused) == (True, False)


CONTRACT: list[Callable[[VectorStore, ChunkSearch], Awaitable[None]]] = [
    check_a_new_index_has_the_bm25_field,
    check_bm25_ranks_the_one_chapter_with_a_name_first,
    check_both_retrievers_keep_to_the_novel_asked,
    check_a_hit_says_where_its_row_came_from,
]
