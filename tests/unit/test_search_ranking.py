"""Chapters from chunk hits: grouping, per-retriever chapter scores, rank fusion."""

from __future__ import annotations

from agents.search_ranking import (
    PASSAGES_PER_CHAPTER,
    RRF_K,
    SearchMode,
    chapters,
    fuse,
    fuse_chunks,
    rank_chapters,
)
from agents.vector_store import Hit


def hit(chapter: str, chunk: int, score: float, novel: str = "n", version: int = 1) -> Hit:
    return Hit(f"{novel}:{chapter}:{chunk}", score, novel, chapter, version, chunk, f"t{chunk}")


def test_a_chapter_appears_once_however_many_of_its_chunks_match() -> None:
    dense = [hit("c2", i, 0.9 - i / 100) for i in range(5)] + [hit("c1", 0, 0.5)]
    found = chapters(dense, [], 5, SearchMode.DENSE)
    assert [h.chapter_id for h in found] == ["c2", "c1"]
    assert len(found[0].passages) == PASSAGES_PER_CHAPTER
    assert [p.chunk_no for p in found[0].passages] == [0, 1, 2], "best first"


def test_a_chapter_matching_twice_beats_one_lucky_chunk() -> None:
    ranked = rank_chapters([hit("lucky", 0, 0.80), hit("steady", 0, 0.75), hit("steady", 1, 0.7)])
    assert [key[1] for key, _ in ranked] == ["steady", "lucky"]
    assert ranked[0][1] == 0.75 + 0.5 * 0.7


def test_the_same_chapter_id_in_two_novels_is_two_chapters() -> None:
    found = chapters([hit("c1", 0, 0.9, "a"), hit("c1", 0, 0.8, "b")], [], 5, SearchMode.DENSE)
    assert [(h.novel_id, h.chapter_id) for h in found] == [("a", "c1"), ("b", "c1")]


def test_fusion_adds_reciprocal_ranks() -> None:
    scored = fuse([[("n", "a"), ("n", "b")], [("n", "b")]])
    assert scored[("n", "a")] == 1 / (RRF_K + 1)
    assert scored[("n", "b")] == 1 / (RRF_K + 2) + 1 / (RRF_K + 1)


def test_hybrid_ranks_first_the_chapter_both_retrievers_agree_on() -> None:
    dense = [hit("semantic", 0, 0.9), hit("both", 0, 0.85), hit("other", 0, 0.8)]
    bm25 = [hit("exact", 0, 12.0), hit("both", 1, 9.0)]
    found = chapters(dense, bm25, 3, SearchMode.HYBRID)
    assert found[0].chapter_id == "both"
    assert (found[0].dense_rank, found[0].bm25_rank) == (2, 2)
    assert {p.chunk_no for p in found[0].passages} == {0, 1}, "passages from both retrievers"
    semantic = next(h for h in found if h.chapter_id == "semantic")
    assert (semantic.dense_rank, semantic.bm25_rank) == (1, None)


def test_a_single_mode_ignores_the_other_list_and_keeps_its_own_scores() -> None:
    dense = [hit("d", 0, 0.9)]
    bm25 = [hit("b", 0, 7.5)]
    only_bm25 = chapters(dense, bm25, 5, SearchMode.BM25)
    assert [(h.chapter_id, h.score, h.dense_rank, h.bm25_rank) for h in only_bm25] == [
        ("b", 7.5, None, 1)
    ]
    assert [h.chapter_id for h in chapters(dense, bm25, 5, SearchMode.DENSE)] == ["d"]


def test_k_bounds_the_chapters_and_nothing_found_is_an_empty_list() -> None:
    dense = [hit(f"c{i}", 0, 1 - i / 10) for i in range(8)]
    assert len(chapters(dense, [], 3, SearchMode.HYBRID)) == 3
    assert chapters([], [], 5, SearchMode.HYBRID) == []


def test_the_version_shown_is_the_newest_of_the_passages() -> None:
    found = chapters([hit("c", 0, 0.9, version=3), hit("c", 1, 0.8, version=4)], [], 1, "dense")
    assert found[0].chapter_version == 4


def test_chunk_mode_fuses_chunks_by_rank() -> None:
    dense = [hit("a", 0, 0.9), hit("b", 0, 0.8)]
    bm25 = [hit("b", 0, 5.0), hit("c", 0, 4.0)]
    fused = fuse_chunks(dense, bm25, 3, SearchMode.HYBRID)
    assert [h.chapter_id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == 1 / (RRF_K + 2) + 1 / (RRF_K + 1)
    assert fuse_chunks(dense, bm25, 1, SearchMode.DENSE) == dense[:1]
    assert fuse_chunks(dense, bm25, 5, SearchMode.BM25) == bm25


def test_the_first_passage_is_the_one_both_retrievers_found_or_else_the_bm25_one() -> None:
    dense = [hit("c", 1, 0.9), hit("c", 2, 0.8)]
    agree = chapters(dense, [hit("c", 2, 5.0)], 1, SearchMode.HYBRID)[0]
    assert [p.chunk_no for p in agree.passages] == [2, 1]
    tie = chapters(dense, [hit("c", 7, 5.0)], 1, SearchMode.HYBRID)[0]
    assert next(p.chunk_no for p in tie.passages) == 7, "the passage with the marked terms"
