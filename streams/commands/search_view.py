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
from streams.commands.search_terms import term_spans
from streams.commands.searching import ChapterResult, SearchResponse

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


def snippet(
    text: str, query: str, max_chars: int = SNIPPET_CHARS, terms: Sequence[str] | None = None
) -> Text:
    """Up to ``max_chars`` characters of ``text`` (:func:`flatten`-ed), starting at the
    sentence before the query's match, with the match highlighted; an ellipsis marks text
    left out at either end. With ``terms`` (the query's words), every occurrence of each is
    highlighted and the snippet starts at the first."""
    flat = flatten(text)
    spans = term_spans(flat, terms) if terms else []
    span = spans[0] if spans else match_span(flat, query)
    if not spans and span is not None:
        spans = [span]
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
    for first, last in spans:
        if start <= first < end:
            view.stylize(MATCH_STYLE, first + offset, min(last, end) + offset)
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
        body = _cut(list(snippet(hit.text, query).wrap(measure, body_width)), max_lines, body_width)
        lines.extend(Text(INDENT) + line for line in body)
    return lines


def chapter_header(hit: ChapterResult, hybrid: bool) -> Text:
    """``#1  0.033  xiyouji/ch0003@v1  dense #1 · bm25 #2``."""
    header = Text(overflow="fold")
    header.append(f"#{hit.rank}", style="bold cyan")
    header.append(f"  {hit.score:.3f}", style="green")
    header.append(f"  {hit.novel_id}/{hit.chapter_id}@v{hit.chapter_version}", style="bold")
    if hybrid:
        ranks = [
            f"{name} #{rank}" if rank is not None else f"{name} -"
            for name, rank in (("dense", hit.explain.dense_rank), ("bm25", hit.explain.bm25_rank))
        ]
        header.append("  " + " · ".join(ranks), style="dim")
    return header


def explain_lines(hit: ChapterResult) -> list[Text]:
    """``--explain``: the event the version came from, its flow run, reused vectors."""
    why = hit.explain
    source = (
        f"{why.source.topic}[{why.source.partition}]@{why.source.offset}"
        if why.source
        else "unknown (indexed before the explain fields)"
    )
    run = why.flow_run_url or why.flow_run_id or "unknown"
    return [
        Text(f"event {source}", style="dim"),
        Text(f"run   {run}", style="dim"),
        Text(
            f"ranks dense {why.dense_rank or '-'}, bm25 {why.bm25_rank or '-'}; "
            f"reused vectors in {why.reused_passages} of {len(hit.passages)} passages",
            style="dim",
        ),
    ]


def render_chapters(
    response: SearchResponse, width: int, explain: bool = False, max_lines: int = SNIPPET_LINES
) -> list[Text]:
    """The lines that show chapter hits: a header, the best passage wrapped (at most
    ``max_lines`` lines) with the query's words highlighted, and with ``explain`` where
    the hit came from; none wider than ``width``."""
    width = max(width, len(INDENT) + 2)
    measure = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    body_width = width - len(INDENT)
    hybrid = response.searched == "hybrid"
    lines: list[Text] = []
    for hit in response.hits:
        if lines:
            lines.append(Text())
        lines.extend(chapter_header(hit, hybrid).wrap(measure, width))
        best = hit.passages[0]
        view = snippet(best.text, response.query, terms=response.terms)
        body = _cut(list(view.wrap(measure, body_width)), max_lines, body_width)
        lines.extend(Text(INDENT) + line for line in body)
        if explain:
            for line in explain_lines(hit):
                lines.extend(Text(INDENT) + part for part in line.wrap(measure, body_width))
    return lines


def _cut(body: list[Text], max_lines: int, body_width: int) -> list[Text]:
    if len(body) > max_lines:
        body = body[:max_lines]
        last = body[-1]
        last.truncate(body_width - cell_len(ELLIPSIS))
        last.rstrip()
        if not last.plain.endswith(ELLIPSIS):
            last.append(ELLIPSIS)
    return body
