"""Search the index: hybrid (dense + BM25), dense or BM25; chapters or chunks; explained.

One :class:`Searcher` serves ``scribe search`` and the HTTP API (``scribe serve``): it
embeds the query (dense) while Milvus runs the BM25 search, takes
:data:`CANDIDATES` chunks from each retriever, and ranks chapters with
:func:`agents.search_ranking.chapters`. Its answer is a pydantic model, the API's JSON
as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel, ConfigDict, Field

from agents.ports import ChunkSearch
from agents.search_ranking import ChapterHit, SearchMode, chapters, fuse_chunks
from agents.vector_store import Hit
from prefect_bridge.embedding import Embedder
from streams.commands.search_terms import query_terms, term_spans
from streams.settings import Settings
from streams.wiring import build_embedder, chunk_search

#: Chunks asked of each retriever per search: enough to rank chapters by their two best
#: passages well past the ``k`` shown.
CANDIDATES = 100
#: Why a search on a collection made before the BM25 field is dense only.
NO_SPARSE_NOTE = (
    "this index was created before hybrid search and has no BM25 field: searched dense "
    "only. `scribe replay --resink` moves it to a hybrid collection without embedding."
)


class Source(BaseModel):
    """Where the event a row derives from was logged."""

    model_config = ConfigDict(frozen=True)
    topic: str
    partition: int
    offset: int


class Passage(BaseModel):
    """One chunk of a hit, with the spans of the query's terms in its text."""

    model_config = ConfigDict(frozen=True)
    chunk_no: int
    text: str
    highlights: list[tuple[int, int]] = Field(description="[start, end) of matched terms.")
    reused: bool | None = Field(description="Its vector was reused, not embedded again.")


class Explain(BaseModel):
    """Why a hit is where it is, and where it came from."""

    model_config = ConfigDict(frozen=True)
    dense_rank: int | None = Field(description="The chapter's rank by dense search alone.")
    bm25_rank: int | None = Field(description="The chapter's rank by BM25 alone.")
    source: Source | None = Field(description="The input event of the indexed version.")
    flow_run_id: str | None
    flow_run_url: str | None = Field(description="The run in the Prefect UI.")
    reused_passages: int = Field(description="Passages shown whose vector was reused.")


class ChapterResult(BaseModel):
    """One chapter found: its newest indexed version and best passages, best first."""

    model_config = ConfigDict(frozen=True)
    rank: int
    novel_id: str
    chapter_id: str
    chapter_version: int
    score: float = Field(description="Fused RRF score (hybrid), else the retriever's.")
    passages: list[Passage]
    explain: Explain


class SearchResponse(BaseModel):
    """A search's answer: chapters (or chunks with ``chunks``), best first."""

    model_config = ConfigDict(frozen=True)
    query: str
    mode: SearchMode = Field(description="The mode asked for.")
    searched: SearchMode = Field(description="The mode used (dense on an older index).")
    note: str | None = None
    terms: list[str] = Field(description="The query's words, as highlighted.")
    hits: list[ChapterResult]


class Searcher:
    """Runs searches on one index with one embedder (both opened by the caller)."""

    def __init__(self, embedder: Embedder, search: ChunkSearch, ui_url: str | None) -> None:
        self._embedder = embedder
        self._search = search
        self._ui_url = ui_url
        self._embedding = asyncio.Lock()  # one query at a time through the model

    async def chunk_hits(
        self, query: str, novel: str | None, mode: SearchMode, n: int = CANDIDATES
    ) -> tuple[SearchMode, list[Hit], list[Hit]]:
        """The mode used and each retriever's ``n`` best chunks (BM25 runs while the query
        is embedded)."""
        mode = SearchMode(mode)
        sparse = await self._search.has_sparse()
        if sparse is None:
            return mode, [], []  # no index yet
        if mode != SearchMode.DENSE and not sparse:
            mode = SearchMode.DENSE
        dense = self._dense(query, n, novel) if mode != SearchMode.BM25 else _nothing()
        bm25 = self._search.bm25(query, n, novel) if mode != SearchMode.DENSE else _nothing()
        dense_hits, sparse_hits = await asyncio.gather(dense, bm25)
        return mode, dense_hits, sparse_hits

    async def _dense(self, query: str, n: int, novel: str | None) -> list[Hit]:
        async with self._embedding:
            vector = await asyncio.to_thread(self._embedder.embed_query, query)
        return await self._search.dense(vector, n, novel)

    async def search(
        self, query: str, k: int, novel: str | None = None, mode: SearchMode = SearchMode.HYBRID
    ) -> SearchResponse:
        """The ``k`` best chapters."""
        used, dense, sparse = await self.chunk_hits(query, novel, mode)
        terms = query_terms(query)
        hits = [
            self._result(rank, hit, terms)
            for rank, hit in enumerate(chapters(dense, sparse, k, used), 1)
        ]
        note = NO_SPARSE_NOTE if used != mode else None
        return SearchResponse(
            query=query, mode=mode, searched=used, note=note, terms=terms, hits=hits
        )

    async def search_chunks(
        self, query: str, k: int, novel: str | None = None, mode: SearchMode = SearchMode.HYBRID
    ) -> tuple[SearchMode, list[Hit]]:
        """The ``k`` best chunks (``--chunks``) and the mode used."""
        used, dense, sparse = await self.chunk_hits(query, novel, mode, max(k, CANDIDATES))
        return used, fuse_chunks(dense, sparse, k, used)

    def _result(self, rank: int, hit: ChapterHit, terms: list[str]) -> ChapterResult:
        best = hit.passages[0]
        source = None
        topic, partition, offset = best.source_topic, best.source_partition, best.source_offset
        if topic is not None and partition is not None and offset is not None:
            source = Source(topic=topic, partition=partition, offset=offset)
        url = None
        if self._ui_url and best.flow_run_id:
            url = f"{self._ui_url}/runs/flow-run/{best.flow_run_id}"
        return ChapterResult(
            rank=rank,
            novel_id=hit.novel_id,
            chapter_id=hit.chapter_id,
            chapter_version=hit.chapter_version,
            score=hit.score,
            passages=[
                Passage(
                    chunk_no=p.chunk_no,
                    text=p.text,
                    highlights=term_spans(p.text, terms),
                    reused=p.reused,
                )
                for p in hit.passages
            ],
            explain=Explain(
                dense_rank=hit.dense_rank,
                bm25_rank=hit.bm25_rank,
                source=source,
                flow_run_id=best.flow_run_id,
                flow_run_url=url,
                reused_passages=sum(1 for p in hit.passages if p.reused),
            ),
        )


async def _nothing() -> list[Hit]:
    return []


@asynccontextmanager
async def open_searcher(settings: Settings) -> AsyncIterator[Searcher]:
    """A :class:`Searcher` on the configured index and model, closed on exit (the model
    loads in a worker thread: a few seconds, once)."""
    embedder = await asyncio.to_thread(build_embedder, settings)
    await asyncio.to_thread(query_terms, "西游")  # jieba loads its dictionary once (~0.7 s)
    store, search = chunk_search(settings)
    try:
        yield Searcher(embedder, search, settings.prefect_ui_url)
    finally:
        await store.close()
