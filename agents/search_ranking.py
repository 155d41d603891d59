"""From chunk hits to chapters: what ``scribe search`` and the search API return.

Pure functions, no I/O. Each retriever (dense cosine, BM25) returns chunks best first.
A writer asks for chapters, so each retriever's chunks are first grouped into chapters and
every chapter scored by its best passage plus half its second best (a chapter that matches
in two places beats one lucky chunk); the chapter rankings of the two retrievers are then
fused by reciprocal rank fusion (RRF). Fusing ranks, not scores, because BM25 scores from
different segments of a Milvus index are not comparable with each other, let alone with
cosine similarities. Fusing *chapter* rankings rather than chunk rankings is what made
hybrid better than dense alone when measured (FINDINGS: recall@5 0.96 vs 0.93).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from agents.vector_store import Hit

#: The RRF constant: a chapter ranked r by a retriever gets ``1 / (RRF_K + r)``.
RRF_K = 60
#: Weight of a chapter's second-best passage in its per-retriever score.
SECOND_PASSAGE_WEIGHT = 0.5
#: Passages shown per chapter, at most.
PASSAGES_PER_CHAPTER = 3


class SearchMode(StrEnum):
    """Which retrievers a search uses."""

    HYBRID = "hybrid"
    DENSE = "dense"
    BM25 = "bm25"


@dataclass(frozen=True)
class ChapterHit:
    """One chapter found, with its best passages (best first) and its ranks before fusion.

    ``score`` is the fused RRF score in hybrid mode and the retriever's chapter score
    otherwise; ``dense_rank`` and ``bm25_rank`` count from 1 (``None``: that retriever did
    not return the chapter, or was not asked).
    """

    novel_id: str
    chapter_id: str
    chapter_version: int
    score: float
    dense_rank: int | None
    bm25_rank: int | None
    passages: tuple[Hit, ...]


def chapter_key(hit: Hit) -> tuple[str, str]:
    """``(novel_id, chapter_id)``."""
    return hit.novel_id, hit.chapter_id


def rank_chapters(hits: Sequence[Hit]) -> list[tuple[tuple[str, str], float]]:
    """Chapters of ``hits`` (chunks best first, scores higher-is-better) ranked by their best
    passage's score plus :data:`SECOND_PASSAGE_WEIGHT` times their second best's."""
    scores: dict[tuple[str, str], list[float]] = {}
    for hit in hits:
        found = scores.setdefault(chapter_key(hit), [])
        if len(found) < 2:
            found.append(hit.score)
    ranked = {
        key: s[0] + (SECOND_PASSAGE_WEIGHT * s[1] if len(s) > 1 else 0.0)
        for key, s in scores.items()
    }
    return sorted(ranked.items(), key=lambda item: -item[1])


def fuse(
    rankings: Sequence[Sequence[tuple[str, str]]], k: int = RRF_K
) -> dict[tuple[str, str], float]:
    """Reciprocal rank fusion of rankings (best first): ``sum(1 / (k + rank))``."""
    fused: dict[tuple[str, str], float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


def _passages(key: tuple[str, str], lists: Sequence[Sequence[Hit]]) -> tuple[Hit, ...]:
    """The chapter's chunks from every list, fused by rank within the chapter: a chunk both
    retrievers found first; on a tie, the one the last list (BM25, whose terms the reader
    sees marked) ranks higher."""
    scores: dict[int, float] = {}
    last_position: dict[int, int] = {}
    hits: dict[int, Hit] = {}
    for which, found in enumerate(lists):
        position = 0
        for hit in found:
            if chapter_key(hit) != key:
                continue
            position += 1
            scores[hit.chunk_no] = scores.get(hit.chunk_no, 0.0) + 1.0 / (RRF_K + position)
            hits.setdefault(hit.chunk_no, hit)
            if which == len(lists) - 1:
                last_position[hit.chunk_no] = position
    order = sorted(scores, key=lambda c: (-scores[c], last_position.get(c, 1 << 30)))
    return tuple(hits[c] for c in order[:PASSAGES_PER_CHAPTER])


def chapters(
    dense: Sequence[Hit], bm25: Sequence[Hit], k: int, mode: SearchMode
) -> list[ChapterHit]:
    """The ``k`` best chapters for ``mode`` from each retriever's chunk hits (best first).

    In ``dense`` or ``bm25`` mode the other list is ignored; in ``hybrid`` mode a chapter
    found by one retriever only still competes, with its one rank.
    """
    dense_ranked = rank_chapters(dense) if mode != SearchMode.BM25 else []
    bm25_ranked = rank_chapters(bm25) if mode != SearchMode.DENSE else []
    dense_rank = {key: r for r, (key, _) in enumerate(dense_ranked, 1)}
    bm25_rank = {key: r for r, (key, _) in enumerate(bm25_ranked, 1)}
    if mode == SearchMode.HYBRID:
        scored = fuse([[key for key, _ in dense_ranked], [key for key, _ in bm25_ranked]])
        # ties (equal fused scores) go to the better dense rank: deterministic
        order = sorted(scored, key=lambda key: (-scored[key], dense_rank.get(key, 1 << 30)))
    else:
        ranked = dense_ranked or bm25_ranked
        scored = dict(ranked)
        order = [key for key, _ in ranked]
    lists = [hits for hits, used in ((dense, dense_ranked), (bm25, bm25_ranked)) if used]
    out = []
    for key in order[:k]:
        passages = _passages(key, lists)
        out.append(
            ChapterHit(
                novel_id=key[0],
                chapter_id=key[1],
                chapter_version=max(p.chapter_version for p in passages),
                score=scored[key],
                dense_rank=dense_rank.get(key),
                bm25_rank=bm25_rank.get(key),
                passages=passages,
            )
        )
    return out


def fuse_chunks(dense: Sequence[Hit], bm25: Sequence[Hit], k: int, mode: SearchMode) -> list[Hit]:
    """The ``k`` best chunks (``--chunks``): one retriever's list, or both fused by RRF."""
    if mode == SearchMode.DENSE:
        return list(dense[:k])
    if mode == SearchMode.BM25:
        return list(bm25[:k])
    by_id = {hit.id: hit for hit in [*bm25, *dense]}
    scored: dict[str, float] = {}
    for hits in (dense, bm25):
        for rank, hit in enumerate(hits, 1):
            scored[hit.id] = scored.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(scored, key=lambda i: -scored[i])[:k]
    return [replace(by_id[i], score=scored[i]) for i in order]  # fused, as in chapter mode
