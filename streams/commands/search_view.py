"""How ``scribe search`` shows its hits in a terminal of any width.

One block per hit: a header line (rank, score, ``novel/chapter@vN``, chunk number), then a
snippet of the chunk wrapped to the terminal, at most a few lines, starting near the part
that matches the query (highlighted) or at the chunk's start when nothing matches literally
(semantic hits often share no words with the query). The Milvus rows carry no chapter
title, so none is shown. Widths are measured in terminal cells, so CJK text (two cells a
character) never overflows a line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from agents.vector_store import Hit

#: Characters of chunk text taken for a snippet, at most.
SNIPPET_CHARS = 300
#: Lines of chunk text shown per hit, at most.
SNIPPET_LINES = 6
#: Characters kept before the matching part, so that it is read in context.
LEAD_CHARS = 40
#: Shortest match worth highlighting, in cells (2 CJK characters, 4 Latin letters).
MIN_MATCH_CELLS = 4
#: Longest part of the query looked for in the text.
MAX_QUERY_CHARS = 32
#: Where a sentence ends; a snippet that does not start the chunk starts after one of these.
SENTENCE_ENDS = "。！？；….!?;"
ELLIPSIS = "…"
INDENT = "  "
MATCH_STYLE = "bold yellow"


def match_span(text: str, query: str) -> tuple[int, int] | None:
    """Where the longest part of ``query`` found in ``text`` is: (start, end), or None.

    The whole query is tried first, then ever shorter parts of it, down to
    :data:`MIN_MATCH_CELLS` cells; matching ignores case when that keeps offsets intact.
    """
    needle = " ".join(query.split())[:MAX_QUERY_CHARS]
    haystack = text
    if len(text.lower()) == len(text) and len(needle.lower()) == len(needle):
        haystack, needle = text.lower(), needle.lower()
    for size in range(len(needle), 0, -1):
        for start in range(len(needle) - size + 1):
            part = needle[start : start + size]
            if part.strip() != part or cell_len(part) < MIN_MATCH_CELLS:
                continue
            found = haystack.find(part)
            if found >= 0:
                return found, found + size
    return None


def flatten(text: str) -> str:
    """``text`` on one line: a run of whitespace becomes one space, or nothing between two
    wide (CJK) characters, where a space would only make the wrapped lines ragged."""
    parts: list[str] = []
    for word in text.split():
        if parts and not (cell_len(parts[-1][-1]) == 2 and cell_len(word[0]) == 2):
            parts.append(" ")
        parts.append(word)
    return "".join(parts)


def snippet(text: str, query: str, max_chars: int = SNIPPET_CHARS) -> Text:
    """Up to ``max_chars`` characters of ``text`` (:func:`flatten`-ed), starting at the
    sentence before the query's match, with the match highlighted; an ellipsis marks text
    left out at either end."""
    flat = flatten(text)
    span = match_span(flat, query)
    start = 0
    if span is not None and span[0] > LEAD_CHARS:
        start = span[0] - LEAD_CHARS
        lead = flat[start : span[0]]
        cut = max(lead.rfind(end) for end in SENTENCE_ENDS)
        if cut >= 0:
            start += cut + 1
        while start < span[0] and flat[start] == " ":
            start += 1
    end = min(len(flat), start + max_chars)
    view = Text(overflow="fold")
    if start > 0:
        view.append(ELLIPSIS)
    offset = len(view) - start
    view.append(flat[start:end])
    if end < len(flat):
        view.append(ELLIPSIS)
    if span is not None and span[0] >= start:
        view.stylize(MATCH_STYLE, span[0] + offset, min(span[1], end) + offset)
    return view


def hit_header(rank: int, hit: Hit) -> Text:
    """``#1  0.873  xiyouji/ch0003@v1  chunk 4``."""
    header = Text(overflow="fold")
    header.append(f"#{rank}", style="bold cyan")
    header.append(f"  {hit.score:.3f}", style="green")
    header.append(f"  {hit.novel_id}/{hit.chapter_id}@v{hit.chapter_version}", style="bold")
    header.append(f"  chunk {hit.chunk_no}", style="dim")
    return header


def render_hits(
    hits: Sequence[Hit], query: str, width: int, max_lines: int = SNIPPET_LINES
) -> list[Text]:
    """The lines that show ``hits`` in a terminal ``width`` cells wide; none is wider.

    Each hit is its header, then its :func:`snippet` indented and wrapped to at most
    ``max_lines`` lines (the last one ends with an ellipsis when text was cut), then a blank
    line between hits.
    """
    width = max(width, len(INDENT) + 2)
    measure = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    body_width = width - len(INDENT)
    lines: list[Text] = []
    for rank, hit in enumerate(hits, 1):
        if rank > 1:
            lines.append(Text())
        lines.extend(hit_header(rank, hit).wrap(measure, width))
        body = list(snippet(hit.text, query).wrap(measure, body_width))
        if len(body) > max_lines:
            body = body[:max_lines]
            last = body[-1]
            last.truncate(body_width - cell_len(ELLIPSIS))
            last.rstrip()
            if not last.plain.endswith(ELLIPSIS):
                last.append(ELLIPSIS)
        lines.extend(Text(INDENT) + line for line in body)
    return lines
