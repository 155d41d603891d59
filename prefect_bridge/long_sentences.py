"""Cutting one over-long sentence into pieces that fit a token limit (pure: no I/O).

A chapter may hold a "sentence" of any length: a 2 MiB chapter without a single sentence
end is one sentence. Each piece is the longest prefix of the rest that fits ``limit``
tokens, exactly as before, but it is found by galloping from a small window (doubling it
until its text is over the limit) and then bisecting inside that window, so the tokenizer
only ever reads text near the cut: the work per piece is bounded by a few times the
piece's own length, and the work per sentence is linear in its length. Bisecting over the
whole remaining sentence read ~half of it ~20 times per piece: quadratic, ~10 minutes for
2 MiB of CJK text with the model's tokenizer, far over the chunk task's timeout.

For a token count that grows with the prefix (every tokenizer in practice), the pieces
are the same as the old full-range bisection's, so chunks of unchanged text keep their
boundaries and their vectors.
"""

from __future__ import annotations

from collections.abc import Callable

TokenCounter = Callable[[str], int]
Unit = tuple[int, int, int]  # start, end, tokens

#: The first window, in characters per token of the limit (CJK: ~1 character a token).
FIRST_WINDOW_PER_TOKEN = 2


def cut_long(text: str, span: tuple[int, int], count: TokenCounter, limit: int) -> list[Unit]:
    """Cut ``text[span]`` into consecutive pieces of at most ``limit`` tokens.

    A piece is never empty: a single character over the limit is a piece of its own.
    """
    start, end = span
    pieces: list[Unit] = []
    while start < end:
        cut = _longest_fitting_prefix(text, start, end, count, limit)
        pieces.append((start, cut, count(text[start:cut])))
        start = cut
    return pieces


def _longest_fitting_prefix(
    text: str, start: int, end: int, count: TokenCounter, limit: int
) -> int:
    """The largest ``cut`` in ``(start, end]`` with ``count(text[start:cut]) <= limit``."""
    width = max(1, FIRST_WINDOW_PER_TOKEN * limit)
    lo = start + 1  # the least cut: one character, even over the limit
    hi = min(end, start + width)
    while hi < end and count(text[start:hi]) <= limit:  # gallop: the window still fits
        lo = hi
        width *= 2
        hi = min(end, start + width)
    while lo < hi:  # bisect within the window: text[start:hi] is over, or hi is the end
        mid = (lo + hi + 1) // 2
        if count(text[start:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo
