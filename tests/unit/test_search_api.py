"""The search API on the in-memory index: answers, and bad input that never becomes a 500.

The same requests run against the real server in ``tests/integration/test_search.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi.testclient import TestClient

from prefect_bridge.embedding import HashingEmbedder
from schemas import VectorStoreError
from streams.commands.searching import Searcher
from streams.search_api.app import MAX_QUERY_CHARS, create_app
from tests.chunk_search_contract import TEXTS, written
from tests.fakes import InMemoryVectorStore
from tests.vector_store_contract import DIM


def client_for(store: InMemoryVectorStore) -> TestClient:
    @asynccontextmanager
    async def open_searcher() -> AsyncIterator[Searcher]:
        yield Searcher(HashingEmbedder(DIM), store, "http://prefect.test")

    return TestClient(create_app(open_searcher), raise_server_exceptions=False)


@pytest.fixture
def api() -> Iterator[TestClient]:
    store = InMemoryVectorStore()
    chapters = [written("n1", c, axis, run=f"run-{c}") for axis, c in enumerate(TEXTS)]
    asyncio.run(store.upsert_chapters(chapters))
    with client_for(store) as client:
        yield client


def test_search_returns_chapters_with_marked_terms_and_explain(api: TestClient) -> None:
    answer = api.get("/search", params={"q": "须菩提祖师", "k": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == body["searched"] == "hybrid"
    top = body["hits"][0]
    assert (top["rank"], top["novel_id"], top["chapter_id"]) == (1, "n1", "c2")
    passage = top["passages"][0]
    marked = [passage["text"][s:e] for s, e in passage["highlights"]]
    assert any("须菩提" in m for m in marked), marked
    why = top["explain"]
    assert why["bm25_rank"] == 1
    assert why["source"] == {"topic": "novel-events", "partition": 1, "offset": 41}
    assert why["flow_run_url"] == "http://prefect.test/runs/flow-run/run-c2"
    assert len(body["hits"]) <= 2


def test_every_mode_answers_and_a_novel_filter_keeps_to_it(api: TestClient) -> None:
    for mode in ("hybrid", "dense", "bm25"):
        body = api.get("/search", params={"q": "花果山", "mode": mode}).json()
        assert body["searched"] == mode and body["hits"], body
    assert api.get("/search", params={"q": "花果山", "novel": "nobody"}).json()["hits"] == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"q": ""}, "empty"),
        ({"q": "   "}, "empty"),
        ({"q": "x" * 10_000}, "characters"),
        ({"q": "孙" * 2_000}, "characters"),
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "characters"),
        ({"q": "花果\x00山"}, "control"),
        ({"q": "花果\x1b[31m山"}, "control"),
        ({"q": "花果山", "k": 0}, "k"),
        ({"q": "花果山", "k": 1000}, "k"),
        ({"q": "花果山", "k": "many"}, "k"),
        ({"q": "花果山", "mode": "magic"}, "mode"),
        ({"q": "花果山", "novel": '../etc" or 1==1'}, "novel"),
        ({}, "q"),
    ],
)
def test_bad_input_is_a_400_with_a_reason_and_no_trace(
    api: TestClient, params: dict[str, object], says: str
) -> None:
    answer = api.get("/search", params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert says in body["error"], body
    assert "Traceback" not in answer.text and len(answer.text) < 1000, "no echo of the input"


def test_the_index_away_is_a_503_with_retry_after() -> None:
    class Away(InMemoryVectorStore):
        async def has_sparse(self) -> bool:
            raise VectorStoreError("Milvus describe failed: connection refused")

    with client_for(Away()) as client:
        answer = client.get("/search", params={"q": "花果山"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "try again" in answer.json()["error"]


def test_an_unexpected_error_is_a_500_in_one_line() -> None:
    class Broken(InMemoryVectorStore):
        async def bm25(self, query: str, n: int, novel_id: str | None) -> list[object]:  # type: ignore[override]
            raise RuntimeError("secret internals")

    with client_for(Broken()) as client:
        answer = client.get("/search", params={"q": "花果山"})
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal error (RuntimeError); see the server's log"


def test_an_index_without_the_bm25_field_is_searched_dense_and_says_so() -> None:
    store = InMemoryVectorStore()
    store.sparse = False
    asyncio.run(store.upsert_chapters([written("n1", "c1", 0)]))
    with client_for(store) as client:
        body = client.get("/search", params={"q": "花果山"}).json()
    assert (body["mode"], body["searched"]) == ("hybrid", "dense")
    assert "--resink" in body["note"]
    assert body["hits"][0]["explain"]["bm25_rank"] is None


def test_the_page_and_the_docs_are_served(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="q"' in page.text and "/search?" in page.text
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    assert "/search" in spec["paths"]
    assert api.get("/health").json() == {"status": "ok"}
