"""Sentence-aware chunking for Chinese and English prose (pure: no I/O).

Chunks are exact slices of the chapter text (``text[start:end]``), built from whole
sentences up to a token budget, with a small overlap of trailing sentences carried into
the next chunk. Sentences longer than the budget are cut at the budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: Bump when the chunking output for the same input changes (part of the pipeline version).
CHUNKER_VERSION = "sent1"

TokenCounter = Callable[[str], int]

# A sentence ends at a run of CJK or Latin terminators (。！？… and .!?;) plus any closing
# quotes or brackets, or at a line break.
_SENTENCE_END = re.compile(
    r"(?:[。！？!?…；;]+|\.(?=[」』”’\"')）\]】]*(?:\s|$))|\.{3})[」』”’\"')）\]】]*|\n+"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_WORD = re.compile(r"[A-Za-z0-9]+")


def estimate_tokens(text: str) -> int:
    """A model-free token estimate: one per CJK character, ~1.3 per Latin word."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    return cjk + (words * 13 + 9) // 10


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: its number, its slice of the chapter and its token estimate."""

    chunk_no: int
    start: int
    end: int
    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class ChunkingPolicy:
    """Token budget per chunk and overlap between neighbours."""

    target_tokens: int = 350
    max_tokens: int = 400
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if not 0 < self.target_tokens <= self.max_tokens:
            raise ValueError("need 0 < target_tokens <= max_tokens")
        if not 0 <= self.overlap_tokens < self.target_tokens:
            raise ValueError("need 0 <= overlap_tokens < target_tokens")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of the sentences of ``text``, whitespace-only spans dropped."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if text[start:end].strip():
            spans.append(_trim(text, start, end))
        start = end
    if text[start:].strip():
        spans.append(_trim(text, start, len(text)))
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cut_long(
    text: str, span: tuple[int, int], count: TokenCounter, limit: int
) -> list[tuple[int, int, int]]:
    """Cut one over-long sentence into pieces of at most ``limit`` tokens."""
    start, end = span
    pieces: list[tuple[int, int, int]] = []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:  # largest cut whose prefix fits the limit
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        pieces.append((start, lo, count(text[start:lo])))
        start = lo
    return pieces


def chunk_text(
    text: str,
    policy: ChunkingPolicy = ChunkingPolicy(),
    count: TokenCounter = estimate_tokens,
) -> list[Chunk]:
    """Split ``text`` into overlapping, sentence-aligned chunks (see module docstring)."""
    sentences: list[tuple[int, int, int]] = []
    for span in split_sentences(text):
        tokens = count(text[span[0] : span[1]])
        if tokens > policy.max_tokens:
            sentences.extend(_cut_long(text, span, count, policy.max_tokens))
        else:
            sentences.append((span[0], span[1], tokens))

    chunks: list[Chunk] = []
    window: list[tuple[int, int, int]] = []
    fresh = 0  # sentences in the window not already emitted in the previous chunk

    def emit() -> None:
        start, end = window[0][0], window[-1][1]
        tokens = sum(s[2] for s in window)
        chunks.append(Chunk(len(chunks), start, end, text[start:end], tokens))

    for sentence in sentences:
        total = sum(s[2] for s in window)
        if window and (total >= policy.target_tokens or total + sentence[2] > policy.max_tokens):
            emit()
            carry: list[tuple[int, int, int]] = []
            carried = 0
            for prev in reversed(window):
                if carried + prev[2] > policy.overlap_tokens or len(carry) + 1 >= len(window):
                    break
                carry.insert(0, prev)
                carried += prev[2]
            if carried + sentence[2] > policy.max_tokens:
                carry = []
            window = carry
            fresh = 0
        window.append(sentence)
        fresh += 1
    if window and fresh:
        emit()
    return chunks
