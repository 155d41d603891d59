"""Content-defined, sentence-aware chunking for Chinese and English prose (pure: no I/O).

Chunks are exact slices of the chapter text (``text[start:end]``) made of whole
sentences (a sentence over ``max_tokens`` is cut into pieces of ``max_tokens``, in time linear
in its length: see :mod:`prefect_bridge.long_sentences`). Where a
chunk ends is decided by the text around that place, not by the chunks before it, so an
edit changes only the chunks near it and every other chunk keeps its text (and can keep
its embedding):

1. each sentence gets a stable hash of its text; a sentence whose hash is the highest
   within ``window_tokens`` on both sides is an *anchor* and ends a piece (anchors are
   ``window_tokens`` apart at least, ~2x apart on average);
2. a piece over ``max_tokens - overlap_tokens`` is cut at the highest-hash sentence end
   near its middle, recursively: still content-defined, within the piece;
3. each chunk is its piece plus the last sentences (at most ``overlap_tokens``, never the
   whole piece) of the previous piece, so neighbours overlap as before; the overlap only
   depends on the previous piece's tail, so it does not spread an edit farther.

Chunks average about 3/4 of ``target_tokens`` (greedy packing filled them to it) and
never exceed ``max_tokens``. An edit of a paragraph changes 1-2 chunks in the median on
the bundled sample, against ~7 with greedy packing (tests/unit/test_chunk_edits.py).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from prefect_bridge.long_sentences import cut_long

#: Bump when the chunking output for the same input changes (part of the pipeline version).
#: cdc2: long sentences are cut by galloping; for a tokenizer whose count of a prefix is not
#: monotone (Latin words cut inside), a few cuts differ from cdc1's full-range bisection.
CHUNKER_VERSION = "cdc2"

TokenCounter = Callable[[str], int]
_Unit = tuple[int, int, int]  # start, end, tokens

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
    """Token budget per chunk and overlap between neighbours.

    ``target_tokens`` sets the typical size (the anchor window, see the module docstring),
    ``max_tokens`` is a hard limit, ``overlap_tokens`` the most carried over.
    """

    target_tokens: int = 350
    max_tokens: int = 400
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if not 0 < self.target_tokens <= self.max_tokens:
            raise ValueError("need 0 < target_tokens <= max_tokens")
        if not 0 <= self.overlap_tokens < self.target_tokens:
            raise ValueError("need 0 <= overlap_tokens < target_tokens")

    @property
    def window_tokens(self) -> int:
        """Reach of the anchor test, and the least size of a piece where possible."""
        return max(1, self.target_tokens // 2)


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


def _unit_hash(text: str) -> int:
    """A stable 64-bit hash of a unit's text (not Python's ``hash``, which is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _units(text: str, policy: ChunkingPolicy, count: TokenCounter) -> list[_Unit]:
    """Sentences with their token counts; a sentence over ``max_tokens`` is cut in pieces."""
    units: list[_Unit] = []
    for span in split_sentences(text):
        tokens = count(text[span[0] : span[1]])
        if tokens > policy.max_tokens:
            units.extend(cut_long(text, span, count, policy.max_tokens))
        else:
            units.append((span[0], span[1], tokens))
    return units


def _anchors(units: list[_Unit], hashes: list[int], window: int) -> list[int]:
    """Units whose hash beats every unit within ``window`` tokens on either side.

    Such a unit ends a piece. The test looks at nothing farther than ``window`` tokens,
    so an edit moves only the anchors within ``window`` tokens of it; and two anchors are
    always more than ``window`` tokens apart. The first and last pieces are kept longer
    than ``window`` too (no anchor within ``window`` tokens of either end of the text).
    """
    ends = list(itertools.accumulate(u[2] for u in units))
    total = ends[-1] if ends else 0
    anchors = []
    for i in range(len(units) - 1):
        if ends[i] <= window or total - ends[i] <= window:
            continue
        j = i - 1
        while j >= 0 and ends[i] - ends[j] <= window and hashes[j] < hashes[i]:
            j -= 1
        if j >= 0 and ends[i] - ends[j] <= window:
            continue
        j = i + 1
        while j < len(units) and ends[j] - ends[i] <= window and hashes[j] < hashes[i]:
            j += 1
        if j == len(units) or ends[j] - ends[i] > window:
            anchors.append(i)
    return anchors


def _split(
    units: list[_Unit],
    hashes: list[int],
    span: tuple[int, int],
    policy: ChunkingPolicy,
    out: list[tuple[int, int]],
) -> None:
    """Append ``units[a:b]`` to ``out`` as pieces of at most ``max - overlap`` tokens.

    An over-budget run is cut at the highest-hash unit end near its middle, then each half
    likewise: the cuts depend on the run's own text only, never on what precedes it.
    """
    a, b = span
    budget = policy.max_tokens - policy.overlap_tokens
    size = sum(u[2] for u in units[a:b])
    if size <= budget or b - a <= 1:
        out.append((a, b))
        return
    least = min(policy.window_tokens, size / 2)  # both sides at least this, where possible
    if size <= 2 * budget:  # both halves can fit: stay within a quarter budget of the middle
        lo = max(size - budget, size / 2 - budget / 4, least)
        hi = min(budget, size / 2 + budget / 4, size - least)
    else:
        lo, hi = size / 2 - budget / 2, size / 2 + budget / 2
    best, best_key, acc = a, (-1, 0.0), 0
    for k in range(a, b - 1):
        acc += units[k][2]
        key = (1, float(hashes[k])) if lo <= acc <= hi else (0, -abs(acc - size / 2))
        if key > best_key:
            best, best_key = k, key
    _split(units, hashes, (a, best + 1), policy, out)
    _split(units, hashes, (best + 1, b), policy, out)


def chunk_text(
    text: str,
    policy: ChunkingPolicy = ChunkingPolicy(),
    count: TokenCounter = estimate_tokens,
) -> list[Chunk]:
    """Split ``text`` into content-defined, sentence-aligned chunks (see module docstring)."""
    units = _units(text, policy, count)
    hashes = [_unit_hash(text[s:e]) for s, e, _ in units]
    pieces: list[tuple[int, int]] = []
    start = 0
    for anchor in _anchors(units, hashes, policy.window_tokens):
        _split(units, hashes, (start, anchor + 1), policy, pieces)
        start = anchor + 1
    if start < len(units):
        _split(units, hashes, (start, len(units)), policy, pieces)

    chunks: list[Chunk] = []
    floor = 0  # a chunk starts after the previous chunk's start: chunks advance
    for a, b in pieces:
        first, carried, k = a, 0, a  # carry the previous piece's last sentences
        while k - 1 >= floor and carried + units[k - 1][2] <= policy.overlap_tokens:
            k -= 1
            carried += units[k][2]
        if carried + sum(u[2] for u in units[a:b]) <= policy.max_tokens:
            first = k
        begin, end = units[first][0], units[b - 1][1]
        tokens = sum(u[2] for u in units[first:b])
        chunks.append(Chunk(len(chunks), begin, end, text[begin:end], tokens))
        floor = first + 1
    return chunks
