"""Prometheus metrics of the worker and the runner, with ``/metrics`` and ``/health``.

The HTTP endpoint binds ``SCRIBE_METRICS_HOST``, 127.0.0.1 unless set (compose sets
0.0.0.0 on its internal network, where its Prometheus scrapes it; no port is published).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from prefect_bridge.embedding import Vector
from prefect_bridge.vector_reuse import VectorLookup
from schemas import LIVE, Target

log = logging.getLogger("scribe.metrics")

EVENTS = Counter("scribe_events_consumed", "Valid input events handled, by type", ["event_type"])
DEAD_LETTERS = Counter("scribe_dead_letters", "Messages parked in the DLQ, by error", ["error"])
RUNS_SUBMITTED = Counter("scribe_flow_runs_submitted", "Flow runs accepted by Prefect")
SUBMIT_SECONDS = Histogram(
    "scribe_submit_seconds",
    "Time for Prefect to accept a flow run",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RUNS_FINISHED = Counter(
    "scribe_flow_runs_finished", "Flow runs executed by this runner, by final state", ["state"]
)
CHAPTERS_FAILED = Counter("scribe_chapters_failed", "Chapters whose processing failed for good")
EMBEDDED_CHUNKS = Counter("scribe_embedded_chunks", "Chunks embedded by this process")
REUSED_CHUNKS = Counter(
    "scribe_reused_chunks", "Chunks whose vector the index already held (not embedded again)"
)
EMBED_SECONDS = Counter("scribe_embed_seconds", "Seconds spent embedding (chunks/s = ratio)")
SINK_ROWS = Counter("scribe_sink_rows_written", "Rows upserted into the vector index")
RESULTS = Counter("scribe_results", "Results by outcome", ["kind", "outcome"])
END_TO_END = Histogram(
    "scribe_end_to_end_seconds",
    "Input event produced -> its effect applied to the index",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
LAG = Gauge("scribe_consumer_lag", "Messages behind the end, per partition", ["topic", "partition"])
SINK_BATCH_SECONDS = Histogram(
    "scribe_sink_batch_seconds",
    "Time to apply one batch of results: upserts and deletions, flush, ledger",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


class PrometheusTelemetry:
    """The agents' Telemetry port, exported as Prometheus metrics."""

    def event_consumed(self, event_type: str) -> None:
        """Count an input event."""
        EVENTS.labels(event_type).inc()

    def dead_lettered(self, error_class: str) -> None:
        """Count a dead letter."""
        DEAD_LETTERS.labels(error_class).inc()

    def run_submitted(self, seconds: float) -> None:
        """Count a submission and its latency."""
        RUNS_SUBMITTED.inc()
        SUBMIT_SECONDS.observe(seconds)

    def result_applied(self, kind: str, rows: int, latency_seconds: float | None) -> None:
        """Count an applied result, its rows and its end-to-end latency."""
        RESULTS.labels(kind, "applied").inc()
        SINK_ROWS.inc(rows)
        if latency_seconds is not None:
            END_TO_END.observe(latency_seconds)

    def result_skipped(self, kind: str) -> None:
        """Count a result that lost to a newer one."""
        RESULTS.labels(kind, "skipped").inc()

    def chapter_failed(self) -> None:
        """Count a final failure."""
        CHAPTERS_FAILED.inc()


class MeteredVectorLookup:
    """A VectorLookup that counts the chunks it finds in ``scribe_reused_chunks``.

    Every chunk found is reused by the flow, so this counts reuse where the embedder's
    wrapper counts ``scribe_embedded_chunks``.
    """

    def __init__(self, inner: VectorLookup) -> None:
        self._inner = inner

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        """Look up and count the texts found."""
        known = await self._inner.known_vectors(novel_id, chapter_id, model, texts, target)
        REUSED_CHUNKS.inc(sum(1 for t in texts if t in known))
        return known

    def close(self) -> None:
        """Close the wrapped lookup."""
        self._inner.close()


class Heartbeat:
    """Health of a process: fresh while its event loop keeps beating."""

    def __init__(self, max_age: float = 60.0) -> None:
        self._max_age = max_age
        self._last = time.monotonic()

    def beat(self) -> None:
        """Record that the loop is alive."""
        self._last = time.monotonic()

    def healthy(self) -> bool:
        """Whether the last beat is recent."""
        return time.monotonic() - self._last < self._max_age


def serve(
    port: int,
    healthy: Callable[[], bool],
    host: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
) -> ThreadingHTTPServer | None:
    """Serve ``/metrics`` (of ``registry``) and ``/health`` on ``host:port`` in a thread
    (port 0: off)."""
    if port == 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/health"):
                ok = healthy()
                body = json.dumps({"status": "ok" if ok else "unhealthy"}).encode()
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes are not worth a log line each."""

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.warning("metrics endpoint on %s:%d not started: %s", host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics, health on /health", host, port)
    return server
