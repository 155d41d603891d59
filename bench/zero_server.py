"""A bench-only OpenAI-compatible embeddings server that costs (nearly) nothing.

It answers ``POST /v1/embeddings`` at once with a deterministic unit vector per input
(one of 64 fixed vectors, picked by a hash of the text), so a pipeline pointed at it
(``SCRIBE_EMBEDDER=openai``) measures everything but embedding: Kafka, Prefect, Milvus,
PostgreSQL and scribe-stream's own code. What remains of embedding is one local HTTP
round trip per batch and the JSON of its vectors. Never a default, never shipped: only
``bench/ceiling.py`` starts it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Size of every vector (the size of the default model's).
DIMENSION = 384
#: The model name the server reports; pipelines configure it as theirs.
MODEL = "zero-cost-384"


def _vectors(count: int = 64, seed: int = 7) -> list[list[float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        raw = [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]
        norm = math.sqrt(sum(v * v for v in raw))
        out.append([round(v / norm, 6) for v in raw])
    return out


class ZeroServer:
    """The server on ``127.0.0.1:<port>`` in a daemon thread; ``url`` is its API base."""

    def __init__(self, port: int) -> None:
        vectors = [json.dumps(v) for v in _vectors()]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
                texts = body.get("input") or []
                texts = [texts] if isinstance(texts, str) else texts
                items = []
                for i, text in enumerate(texts):
                    pick = hashlib.blake2b(str(text).encode(), digest_size=2).digest()[0] % 64
                    items.append(
                        f'{{"object":"embedding","index":{i},"embedding":{vectors[pick]}}}'
                    )
                payload = (
                    f'{{"object":"list","model":"{MODEL}","data":[{",".join(items)}],'
                    f'"usage":{{"prompt_tokens":0,"total_tokens":0}}}}'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: one line per request would be most of the bench's output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> ZeroServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self) -> dict[str, str]:
        """The ``SCRIBE_*`` settings that point a pipeline at this server."""
        return {
            "SCRIBE_EMBEDDER": "openai",
            "SCRIBE_EMBEDDER_URL": self.url,
            "SCRIBE_EMBEDDER_MODEL": MODEL,
            "SCRIBE_EMBEDDER_DIMENSION": str(DIMENSION),
        }
