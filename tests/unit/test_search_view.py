"""``scribe search`` output: readable at 40, 80 and 200 columns, CJK counted in cells."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from agents.vector_store import Hit
from streams import cli
from streams.commands.search_view import ELLIPSIS, flatten, match_span, render_hits, snippet
from streams.settings import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "streams" / "samples" / "xiyouji-1-10.txt"
QUERY = "如意金箍棒"


def sample_chunk(around: str, before: int, after: int) -> str:
    """A chunk-sized slice of the sample novel with ``around`` inside it."""
    text = SAMPLE.read_text(encoding="utf-8")
    at = text.index(around)
    return text[max(0, at - before) : at + after]


def hits() -> list[Hit]:
    chunk = sample_chunk(QUERY, before=250, after=400)
    return [
        Hit("xiyouji:ch0003:4", 0.8731, "xiyouji", "ch0003", 1, 4, chunk),
        Hit("xiyouji:ch0001:0", 0.8012, "xiyouji", "ch0001", 2, 0, sample_chunk("花果山", 0, 400)),
        Hit(
            "en:c1:0",
            0.5,
            "a-novel-with-a-rather-long-identifier",
            "chapter-0001",
            12,
            31,
            "The Monkey King took the golden-hooped rod from the sea. " * 8,
        ),
    ]


def rendered(width: int, query: str = QUERY) -> list[str]:
    """What a terminal ``width`` cells wide shows, line by line."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for line in render_hits(hits(), query, width):
        console.print(line, soft_wrap=False)
    return console.export_text(styles=False).splitlines()


@pytest.mark.parametrize("width", [40, 80, 200])
def test_no_line_is_wider_than_the_terminal(width: int) -> None:
    lines = rendered(width)
    assert lines
    assert max(cell_len(line) for line in lines) <= width
    for line in render_hits(hits(), QUERY, width):
        assert line.cell_len <= width


@pytest.mark.parametrize("width", [40, 80, 200])
def test_each_hit_has_a_header_and_a_few_lines_of_text(width: int) -> None:
    lines = rendered(width)
    text = "\n".join(lines)
    assert text.count("#1  0.873  xiyouji/ch0003@v1  chunk 4") == 1
    for rank in (1, 2, 3):
        assert f"#{rank}" in text
    blocks = "\n".join(lines).split("\n\n")
    assert len(blocks) == 3
    for block in blocks:
        header = [line for line in block.splitlines() if not line.startswith("  ")]
        body = [line for line in block.splitlines() if line.startswith("  ")]
        assert block.startswith("#") and 1 <= len(header) <= 3, block
        assert 1 <= len(body) <= 6, block


def shown_chars(width: int) -> int:
    """Characters of the first hit's chunk text the terminal shows."""
    block = "\n".join(rendered(width)).split("\n\n")[0]
    body = "".join(line.strip() for line in block.splitlines() if line.startswith("  "))
    return len(body.replace(ELLIPSIS, ""))


def test_an_80_column_terminal_shows_a_useful_snippet() -> None:
    assert shown_chars(80) >= 200  # was 18 characters in the six-column table
    assert shown_chars(40) >= 60
    assert shown_chars(200) >= shown_chars(80)
    block = "\n".join(rendered(80)).split("\n\n")[0]
    assert QUERY in block.replace("\n  ", ""), "the matching part is shown"


def test_the_match_is_shown_in_context_and_highlighted() -> None:
    chunk = hits()[0].text
    view = snippet(chunk, QUERY)
    assert QUERY in view.plain
    assert view.plain.startswith(ELLIPSIS), "the chunk's start is left out"
    assert view.plain.index(QUERY) <= 45, "the match comes near the start"
    [style] = [s for s in view.spans if view.plain[s.start : s.end] == QUERY]
    assert "bold" in str(style.style)


def test_without_a_literal_match_the_snippet_starts_the_chunk() -> None:
    chunk = "话表齐天大圣到底是个妖猴。" * 40
    view = snippet(chunk, "金箍棒")
    assert view.plain.startswith("话表齐天大圣")
    assert not view.spans
    assert view.plain.endswith(ELLIPSIS)
    assert len(view.plain) == 300 + 1


def test_flatten_joins_cjk_lines_without_a_space() -> None:
    assert (
        flatten("第一回\n  灵根育孕源流出\n\nThe  end\tof it")
        == "第一回灵根育孕源流出 The end of it"
    )
    assert flatten("") == ""


def test_match_span_takes_the_longest_part_of_the_query() -> None:
    assert match_span("他得了如意金箍棒", "如意金箍棒") == (3, 8)
    assert match_span("他得了金箍棒", "如意金箍棒在哪") == (3, 6)
    assert match_span("The golden ROD", "rod of gold") == (4, 8), "gold; rod is too short"
    assert match_span("The golden ROD", "golden rod") == (4, 14), "case is ignored"
    assert match_span("他得了金箍棒", "棒") is None, "one CJK character is too short"
    assert match_span("in the sea", "in") is None, "two letters are too short"
    assert match_span("anything", "") is None


def test_search_command_prints_blocks_and_keeps_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import asynccontextmanager

    from prefect_bridge.embedding import HashingEmbedder
    from schemas import ChapterEmbedded, ChunkVector, SourceRef
    from streams.commands import searching
    from tests.fakes import InMemoryVectorStore

    store = InMemoryVectorStore()
    embedder = HashingEmbedder(16)
    results = [
        ChapterEmbedded(
            event_id=uuid.uuid4(),
            novel_id=h.novel_id,
            chapter_id=h.chapter_id,
            version=h.chapter_version,
            model=embedder.name,
            dimension=16,
            pipeline_version="p",
            flow_run_id="run-1",
            source=SourceRef(topic="novel-events", partition=2, offset=9),
            chunks=tuple(
                ChunkVector(chunk_no=i, text=h.text, vector=tuple(embedder.embed_query(h.text)))
                for i in range(h.chunk_no + 1)
            ),
        )
        for h in hits()
    ]
    asyncio.run(store.upsert_chapters(results))

    @asynccontextmanager
    async def open_searcher(settings: object) -> AsyncIterator[searching.Searcher]:
        yield searching.Searcher(embedder, store, "http://ui.test")

    monkeypatch.setattr(searching, "open_searcher", open_searcher)
    monkeypatch.setattr(cli, "_settings", Settings)
    runner = CliRunner()
    plain = runner.invoke(cli.app, ["search", QUERY, "-k", "2"], env={"COLUMNS": "80"})
    assert plain.exit_code == 0, plain.output
    assert "#1" in plain.output and "xiyouji/ch0003@v1" in plain.output, plain.output
    assert "#2" in plain.output and "#3" not in plain.output
    assert "dense #1 · bm25 #1" in plain.output, "hybrid shows both ranks"
    assert max(cell_len(line) for line in plain.output.splitlines()) <= 80
    explained = runner.invoke(cli.app, ["search", QUERY, "--explain"], env={"COLUMNS": "80"})
    assert "event novel-events[2]@9" in explained.output, explained.output
    assert "http://ui.test/runs/flow-run/run-1" in explained.output
    as_json = runner.invoke(cli.app, ["search", QUERY, "-k", "2", "--json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert body["hits"][0]["chapter_id"] == "ch0003"
    assert body["hits"][0]["explain"]["flow_run_url"] == "http://ui.test/runs/flow-run/run-1"
    chunks = runner.invoke(cli.app, ["search", QUERY, "--chunks", "--mode", "dense", "--json"])
    listed = json.loads(chunks.output)
    assert listed["searched"] == "dense" and len(listed["chunks"]) == 5
    assert listed["chunks"][0]["chapter_id"] == "ch0003"
    chunk_lines = runner.invoke(cli.app, ["search", QUERY, "--chunks"], env={"COLUMNS": "80"})
    assert "xiyouji/ch0003@v1  chunk" in chunk_lines.output, chunk_lines.output
