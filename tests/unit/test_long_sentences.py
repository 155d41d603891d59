"""Over-long sentences are cut in work linear in their length, into the same pieces."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from prefect_bridge.long_sentences import cut_long

TWO_MIB = 2 * 1024 * 1024
#: Characters the tokenizer may read per character of text: linear, with room to spare
#: (the cutter reads ~12-30x; bisecting the whole rest of the sentence read ~10^5x).
READ_BUDGET_PER_CHAR = 64


class BudgetedCounter:
    """One token per non-space character; fails once it has read more than its budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.read = 0
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.read += len(text)
        assert self.read <= self.budget, f"the tokenizer read {self.read} characters"
        return len(text) - text.count(" ")


def _sentence_free_cjk(size_bytes: int) -> str:
    rng = random.Random(8)
    alphabet = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏"
    return "".join(rng.choice(alphabet) for _ in range(size_bytes // 3))


def test_a_2_mib_chapter_without_sentence_ends_is_chunked_in_linear_work() -> None:
    text = _sentence_free_cjk(TWO_MIB)
    policy = ChunkingPolicy()
    count = BudgetedCounter(READ_BUDGET_PER_CHAR * len(text))
    chunks = chunk_text(text, policy, count)
    assert max(c.tokens for c in chunks) <= policy.max_tokens
    assert all(c.text == text[c.start : c.end] for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(b.start <= a.end for a, b in itertools.pairwise(chunks))
    assert len(chunks) >= len(text) // policy.max_tokens
    assert count.calls <= 40 * len(chunks)


def _full_range_cut(text: str, count: BudgetedCounter, limit: int) -> list[tuple[int, int]]:
    """The cutter before: bisect over the whole rest of the sentence (the reference)."""
    start, end, cuts = 0, len(text), []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        cuts.append((start, lo))
        start = lo
    return cuts


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="ab 天地", min_size=1, max_size=3000),
    limit=st.integers(min_value=1, max_value=300),
)
def test_the_pieces_are_those_of_a_full_range_bisection(text: str, limit: int) -> None:
    count = BudgetedCounter(10**12)
    pieces = cut_long(text, (0, len(text)), count, limit)
    assert [(s, e) for s, e, _ in pieces] == _full_range_cut(text, count, limit)
    assert all(t == count(text[s:e]) for s, e, t in pieces)
