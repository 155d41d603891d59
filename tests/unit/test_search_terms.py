"""The query's words and where they are in a passage (highlighting)."""

from __future__ import annotations

from streams.commands.search_terms import query_terms, term_spans


def test_query_terms_are_the_words_of_two_characters_or_more() -> None:
    terms = query_terms("孙悟空在花果山的水帘洞称王！")
    assert {"孙悟空", "花果山", "水帘洞"} <= set(terms)
    assert all(len(t) >= 2 for t in terms)
    assert "！" not in terms and "在" not in terms
    assert terms == sorted(terms, key=lambda t: (-len(t), t)), "longest first"


def test_query_terms_of_latin_words_ignore_case_and_punctuation() -> None:
    assert set(query_terms("Golden ROD, golden rod?")) == {"golden", "rod"}
    assert query_terms("？！。") == []
    assert query_terms("") == []


def test_term_spans_find_every_occurrence_and_merge_overlaps() -> None:
    text = "花果山上，花果山下，水帘洞口"
    assert term_spans(text, ["花果山", "水帘洞"]) == [(0, 3), (5, 8), (10, 13)]
    assert term_spans("孙悟空", ["孙悟空", "悟空"]) == [(0, 3)]
    assert term_spans("The Golden Rod", ["golden"]) == [(4, 10)]
    assert term_spans("无关", ["孙悟空"]) == []
