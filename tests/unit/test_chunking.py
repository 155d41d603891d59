"""Sentence-aware chunking: exact slices, full coverage, token budget, overlap."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_bridge.chunking import (
    Chunk,
    ChunkingPolicy,
    chunk_text,
    estimate_tokens,
    split_sentences,
)

SAMPLE = Path(__file__).resolve().parents[2] / "streams" / "samples" / "xiyouji-1-10.txt"

CHINESE = (
    "山间的雾气还没有散去，村口的老槐树下已经坐满了人。"
    "他们说今年的雨水来得早，田里的秧苗长得比往年都好！"
    "可是谁也没有想到，河对岸的那座石桥会在一夜之间塌掉？"
    "“这是天意。”老人摇着头说。\n"
    "孩子们却不管这些，他们沿着河岸奔跑，追着一只迷路的白鹅；"
    "鹅扑腾着翅膀，终于钻进了芦苇丛。"
    "傍晚时分，炊烟从各家的屋顶升起，整个村子安静了下来……"
    "远处传来几声狗叫，月亮慢慢爬上了山头。\n"
)

ENGLISH = (
    "The fog had not yet lifted from the valley. Old men gathered under the locust tree! "
    'Nobody expected the stone bridge to collapse overnight? "It is fate," said one of them.\n'
    "The children did not care; they ran along the river chasing a lost white goose. "
    "At dusk the smoke rose from the chimneys and the village fell silent... "
    "A dog barked in the distance. The moon climbed slowly over the hill.\n"
)


def assert_invariants(text: str, chunks: list[Chunk], policy: ChunkingPolicy) -> None:
    """What every chunking must guarantee, whatever the text."""
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert text[c.start : c.end] == c.text
        assert c.tokens <= policy.max_tokens
        assert estimate_tokens(c.text) <= policy.max_tokens
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start and a.end < b.end, "chunks advance"
    # coverage: every non-space character lies in some chunk
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start : c.end] = [True] * (c.end - c.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered characters at {missing[:10]}"


def sentences_of(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


# -- sentences -----------------------------------------------------------------------------


def test_chinese_sentences_end_at_cjk_terminators_with_closing_quotes() -> None:
    sents = sentences_of("他说：“走吧。”她笑了！真的吗？是的……好；\n第二行")
    assert sents == ["他说：“走吧。”", "她笑了！", "真的吗？", "是的……", "好；", "第二行"]


def test_english_sentences_end_at_terminators_not_inside_numbers() -> None:
    sents = sentences_of('It cost 3.50 dollars. Really?  Yes! He said "go!" Then left...')
    assert sents == ["It cost 3.50 dollars.", "Really?", "Yes!", 'He said "go!"', "Then left..."]


def test_english_period_inside_closing_quote_ends_the_sentence() -> None:
    """The module says a terminator *plus any closing quotes* ends a sentence; for '.' the
    lookahead requires whitespace right after the period, so `."` and `.)` never end one."""
    sents = sentences_of('He said "no." Then he left. (It rained.) The end.')
    assert sents == ['He said "no."', "Then he left.", "(It rained.)", "The end."]


def test_line_breaks_end_sentences_and_blank_lines_are_dropped() -> None:
    text = "第一行没有句号\n\n\n  第二行  \n"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["第一行没有句号", "第二行"]


# -- chunking ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\u3000 \n"])
def test_empty_or_whitespace_text_gives_no_chunks(text: str) -> None:
    assert chunk_text(text) == []


def test_short_text_is_one_chunk_without_surrounding_space() -> None:
    chunks = chunk_text("  One short sentence.  \n")
    assert len(chunks) == 1
    assert chunks[0].text == "One short sentence."
    assert (chunks[0].start, chunks[0].end) == (2, 21)
    assert chunks[0].tokens == estimate_tokens("One short sentence.")


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("西游记") == 3
    assert estimate_tokens("one") == 2  # ceil(1.3)
    assert estimate_tokens("one two three four five six seven eight nine ten") == 13
    assert estimate_tokens("孙悟空 met 八戒") == 5 + 2


@pytest.mark.parametrize("text", [CHINESE * 6, ENGLISH * 6], ids=["chinese", "english"])
def test_long_text_chunks_respect_budget_cover_and_overlap(text: str) -> None:
    # every sentence of the texts is under 30 tokens, so one always fits the overlap
    policy = ChunkingPolicy(target_tokens=60, max_tokens=80, overlap_tokens=30)
    chunks = chunk_text(text, policy)
    assert len(chunks) >= 4
    assert_invariants(text, chunks, policy)
    # every sentence appears whole in some chunk
    for s, e in split_sentences(text):
        assert any(c.start <= s and e <= c.end for c in chunks), text[s:e]
    # neighbours overlap by a few trailing sentences, never by more than the overlap budget
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, f"no overlap between chunk {a.chunk_no} and {b.chunk_no}"
        shared = text[b.start : a.end]
        assert estimate_tokens(shared) <= policy.overlap_tokens
    # chunks are filled towards the target, not cut per sentence
    assert all(c.tokens >= policy.target_tokens // 2 for c in chunks[:-1])


@pytest.mark.parametrize("text", [CHINESE * 6, ENGLISH * 6], ids=["chinese", "english"])
def test_chunks_end_on_sentence_ends(text: str) -> None:
    ends = {e for _, e in split_sentences(text)}
    starts = {s for s, _ in split_sentences(text)}
    chunks = chunk_text(text, ChunkingPolicy(target_tokens=60, max_tokens=80, overlap_tokens=30))
    for c in chunks:
        assert c.text == c.text.strip()
        assert c.end in ends
        assert c.start in starts
    assert chunks[-1].end == len(text.rstrip())
    terminators = "。！？；…”" if text.startswith("山") else '.!?;"'
    assert all(c.text[-1] in terminators for c in chunks)


def test_no_overlap_when_overlap_budget_is_zero() -> None:
    policy = ChunkingPolicy(target_tokens=60, max_tokens=80, overlap_tokens=0)
    chunks = chunk_text(ENGLISH * 4, policy)
    assert len(chunks) > 2
    for a, b in itertools.pairwise(chunks):
        assert b.start > a.end
    assert_invariants(ENGLISH * 4, chunks, policy)


def test_over_long_sentence_without_punctuation_is_cut() -> None:
    text = "天" * 1000
    policy = ChunkingPolicy(target_tokens=100, max_tokens=120, overlap_tokens=10)
    chunks = chunk_text(text, policy)
    assert len(chunks) >= 1000 // 120
    assert "".join(c.text for c in chunks) == text  # pieces neither overlap nor lose text
    assert max(c.tokens for c in chunks) == 120
    assert_invariants(text, chunks, policy)


def test_over_long_english_run_is_cut_within_budget() -> None:
    text = " ".join(f"word{i}" for i in range(600))
    policy = ChunkingPolicy(target_tokens=50, max_tokens=64, overlap_tokens=8)
    chunks = chunk_text(text, policy)
    assert len(chunks) > 5
    assert_invariants(text, chunks, policy)


def test_bundled_chinese_sample_with_default_policy() -> None:
    text = SAMPLE.read_text(encoding="utf-8")[:30_000]
    policy = ChunkingPolicy()
    chunks = chunk_text(text, policy)
    assert len(chunks) > 30
    assert_invariants(text, chunks, policy)
    overlapping = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapping >= len(chunks) // 2


def test_chunking_is_deterministic() -> None:
    assert chunk_text(CHINESE * 3) == chunk_text(CHINESE * 3)


def test_custom_token_counter_is_used() -> None:
    chunks = chunk_text("a. b. c. d. e. f.", ChunkingPolicy(2, 2, 0), count=lambda s: 1)
    assert [c.text for c in chunks] == ["a. b.", "c. d.", "e. f."]


@pytest.mark.parametrize(
    ("target", "maximum", "overlap"),
    [(0, 10, 0), (-1, 10, 0), (11, 10, 0), (10, 10, 10), (10, 10, 11), (10, 10, -1)],
)
def test_policy_rejects_bad_values(target: int, maximum: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingPolicy(target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)


def test_policy_accepts_edge_values_and_is_frozen() -> None:
    policy = ChunkingPolicy(target_tokens=10, max_tokens=10, overlap_tokens=9)
    with pytest.raises(AttributeError):
        policy.max_tokens = 5  # type: ignore[misc]


# -- property ------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("天地人猴王山水云。，！？；…“”「」") + list("abcXYZ019 .!?;\"'") + ["\n", "\u3000"]
)
_WORDS = st.lists(
    st.one_of(
        st.text(_ALPHABET, min_size=1, max_size=12),
        st.sampled_from(["Hello world. ", "齐天大圣。", "wait...", "ok!\n", "3.14 "]),
    ),
    max_size=80,
).map("".join)


@st.composite
def policies(draw: st.DrawFn) -> ChunkingPolicy:
    maximum = draw(st.integers(2, 60))
    target = draw(st.integers(1, maximum))
    overlap = draw(st.integers(0, target - 1))
    return ChunkingPolicy(target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(_WORDS, st.text(max_size=300)), policy=policies())
def test_property_chunks_are_exact_covering_slices_within_budget(
    text: str, policy: ChunkingPolicy
) -> None:
    chunks = chunk_text(text, policy)
    assert_invariants(text, chunks, policy)
    assert (chunks == []) == (text.strip() == "")
