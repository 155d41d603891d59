"""The OpenAI-compatible embedder against httpx's mock transport: batching, order, errors
decided by status, Retry-After. The real server: tests/integration/test_openai_embedder.py."""

from __future__ import annotations

import base64
import json
import math
import threading
from array import array
from datetime import UTC, datetime

import httpx
import pytest

from prefect_bridge.openai_embedding import OpenAIEmbedder, retry_after
from schemas import EmbeddingError, EmbeddingUnavailable


def vector_of(text: str) -> list[float]:
    """A deterministic, un-normalised 4-d vector per text."""
    return [float(len(text)), float(ord(text[0]) % 7 if text else 0), 1.0, 2.0]


class Server:
    """A scripted /v1/embeddings: ``script`` answers the first requests, then 200s."""

    def __init__(self, *script: httpx.Response, base64_out: bool = False) -> None:
        self.script = list(script)
        self.requests: list[dict[str, object]] = []
        self.lock = threading.Lock()
        self.base64_out = base64_out

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.lock:
            self.requests.append(body | {"auth": request.headers.get("authorization")})
            if self.script:
                return self.script.pop(0)
        data = []
        for i, text in reversed(list(enumerate(body["input"]))):  # any order: index counts
            vec = vector_of(text)
            emb: object = (
                base64.b64encode(array("f", vec).tobytes()).decode() if self.base64_out else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"]})


def embedder(server: Server, **kw: object) -> tuple[OpenAIEmbedder, list[float]]:
    slept: list[float] = []
    e = OpenAIEmbedder(
        "http://embed.test/v1",
        "m-1",
        transport=httpx.MockTransport(server),
        sleep=slept.append,
        **kw,  # type: ignore[arg-type]
    )
    return e, slept


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_batches_keep_the_input_order_and_vectors_are_normalised() -> None:
    server = Server()
    e, _ = embedder(server, batch_size=3, concurrency=3, api_key="sk-secret")
    texts = [f"文本{i}" * (i + 1) for i in range(10)]
    vectors = e.embed_passages(texts)
    assert [len(r["input"]) for r in server.requests] == [3, 3, 3, 1]  # type: ignore[arg-type]
    for text, got in zip(texts, vectors, strict=True):
        assert got == pytest.approx(unit(vector_of(text)))
    assert all(r["auth"] == "Bearer sk-secret" and r["model"] == "m-1" for r in server.requests)
    assert e.embed_passages([]) == []


def test_prefixes_input_type_and_the_dimension_learnt_once() -> None:
    server = Server(base64_out=True)
    e, _ = embedder(server, input_type=True, query_prefix="query: ", passage_prefix="passage: ")
    assert e.dimension == 4 and e.dimension == 4
    assert len(server.requests) == 1, "asked once"
    e.embed_query("悟空")
    e.embed_passages(["花果山"])
    assert server.requests[1]["input"] == ["query: 悟空"]
    assert server.requests[1]["input_type"] == "query"
    assert server.requests[2]["input"] == ["passage: 花果山"]
    assert server.requests[2]["input_type"] == "passage"
    assert e.embed_query("x") == pytest.approx(unit(vector_of("query: x")))


def test_429_and_5xx_are_retried_honouring_retry_after() -> None:
    server = Server(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}}),
        httpx.Response(503, text="upstream busy"),
        httpx.Response(502),
    )
    e, slept = embedder(server)
    assert len(e.embed_query("悟空")) == 4
    assert slept == [7.0, 1.0, 2.0], "Retry-After first, then the doubling backoff"


def test_a_server_that_keeps_failing_is_retriable_unavailability() -> None:
    server = Server(*[httpx.Response(500, json={"error": {"message": "boom"}})] * 4)
    e, slept = embedder(server, max_retries=3)
    with pytest.raises(EmbeddingUnavailable, match="4 times; last: HTTP 500: boom") as info:
        e.embed_passages(["a"])
    assert info.value.retriable
    assert slept == [0.5, 1.0, 2.0]


def test_a_refused_connection_is_retried_then_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    e = OpenAIEmbedder(
        "http://embed.test/v1",
        "m",
        transport=httpx.MockTransport(refuse),
        max_retries=2,
        sleep=lambda s: None,
    )
    with pytest.raises(EmbeddingUnavailable, match="ConnectError"):
        e.embed_query("x")


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_a_4xx_that_retrying_cannot_fix_fails_with_the_servers_message(status: int) -> None:
    server = Server(
        httpx.Response(status, json={"error": {"message": "input too long: 9000 tokens"}})
    )
    e, slept = embedder(server)
    with pytest.raises(EmbeddingError, match=rf"\({status}\): input too long: 9000 tokens") as info:
        e.embed_passages(["长" * 9000])
    assert not info.value.retriable
    assert slept == [] and len(server.requests) == 1


def test_an_answer_with_the_wrong_number_of_vectors_is_not_taken() -> None:
    server = Server(httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}]}))
    e, _ = embedder(server, max_retries=0)
    with pytest.raises(EmbeddingUnavailable, match="1 vectors for 2 texts"):
        e.embed_passages(["a", "b"])


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert retry_after("3") == 3.0
    assert retry_after("Sun, 06 Dec 2026 12:00:30 GMT", lambda: now) == 30.0
    assert retry_after("Sun, 06 Dec 2026 11:00:00 GMT", lambda: now) == 0.0
    assert retry_after("99999") == 120.0, "capped"
    assert retry_after("soon") is None and retry_after(None) is None
