"""Metrics, health, JSON logs, telemetry from the agents, the Prefect artifact text."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from prometheus_client import REGISTRY

from agents.index_catalog import SingleIndex
from agents.result_agent import ResultAgent, ResultMessage
from prefect_bridge.chapter import artifact_key, chapter_summary
from schemas import ChapterEmbedded, ChunkVector, SourceRef
from streams import logs
from streams.embedded.processes import free_port
from streams.metrics import Heartbeat, PrometheusTelemetry, serve
from tests.fakes import InMemoryLedger, InMemoryVectorStore


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


class Letters:
    async def dead_letter(self, **kwargs: Any) -> None:
        raise AssertionError("nothing should be dead-lettered")


def embedded(version: int = 1, stamp_ms: int | None = None) -> ChapterEmbedded:
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n",
        chapter_id="c",
        version=version,
        title="第一回",
        model="m",
        dimension=2,
        pipeline_version="pv",
        flow_run_id="run-1",
        source=SourceRef(topic="t", partition=0, offset=3, timestamp_ms=stamp_ms),
        chunks=(
            ChunkVector(chunk_no=0, text="甲", vector=(1.0, 0.0)),
            ChunkVector(chunk_no=1, text="乙", vector=(0.0, 1.0)),
        ),
    )


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_prometheus_telemetry_counts() -> None:
    telemetry = PrometheusTelemetry()
    before = value("scribe_events_consumed_total", {"event_type": "chapter.created"})
    rows = value("scribe_sink_rows_written_total")
    e2e = value("scribe_end_to_end_seconds_count")
    telemetry.event_consumed("chapter.created")
    telemetry.run_submitted(0.05)
    telemetry.result_applied("chapter.embedded", 7, 1.5)
    telemetry.dead_lettered("MalformedJSON")
    assert value("scribe_events_consumed_total", {"event_type": "chapter.created"}) == before + 1
    assert value("scribe_sink_rows_written_total") == rows + 7
    assert value("scribe_end_to_end_seconds_count") == e2e + 1
    assert value("scribe_dead_letters_total", {"error": "MalformedJSON"}) >= 1


def test_metrics_and_health_endpoints_on_loopback() -> None:
    beat = Heartbeat(max_age=0.2)
    port = free_port()
    server = serve(port, beat.healthy)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"scribe_events_consumed" in body
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status == 200
        time.sleep(0.3)  # no beat: unhealthy
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        server.shutdown()
    assert serve(0, beat.healthy) is None  # 0: off


async def test_result_agent_reports_rows_and_end_to_end_latency() -> None:
    recorder = Recorder()
    sink = ResultAgent(
        catalog=SingleIndex(InMemoryVectorStore(), InMemoryLedger()),
        dead_letters=Letters(),
        telemetry=recorder,
    )  # type: ignore[arg-type]
    stamp = int((time.time() - 2) * 1000)
    await sink.handle_batch(
        [
            ResultMessage(
                b"n",
                embedded(2, stamp).model_dump_json().encode(),
                SourceRef(topic="r", partition=0, offset=0),
            )
        ]
    )
    await sink.handle_batch(
        [
            ResultMessage(
                b"n",
                embedded(1).model_dump_json().encode(),
                SourceRef(topic="r", partition=0, offset=1),
            )
        ]
    )
    [(name, (kind, rows, latency)), (skipped, _)] = recorder.calls
    assert (name, kind, rows) == ("result_applied", "chapter.embedded", 2)
    assert 1.5 < latency < 60
    assert skipped == "result_skipped"


def test_json_logs_carry_the_trace_fields() -> None:
    stream = io.StringIO()
    logs.configure("INFO", as_json=True)
    root = logging.getLogger()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        logging.getLogger("scribe.test").info(
            "submitted",
            extra={
                "event_id": "e1",
                "novel_id": "n",
                "chapter_id": "c",
                "version": 2,
                "flow_run_id": "r",
            },
        )
        line = json.loads(stream.getvalue().strip().splitlines()[-1])
        assert line["message"] == "submitted" and line["level"] == "INFO"
        assert (
            line["event_id"],
            line["novel_id"],
            line["chapter_id"],
            line["version"],
            line["flow_run_id"],
        ) == ("e1", "n", "c", 2, "r")
    finally:
        logs.configure("INFO", as_json=False)


def test_artifact_key_and_summary() -> None:
    assert artifact_key("Xi_You.Ji", "CH0001") == "chapter-xi-you-ji-ch0001"
    text = chapter_summary(embedded(3), {"chunk": 0.01, "embed": 2.5})
    # Text from the log is escaped (tests/unit/test_artifact_markdown.py renders it).
    for part in (
        "n / c @ v3",
        "第一回",
        "| chunks | 2",
        "m (2-d)",
        r"t\[0\]\@3",
        "embed | 2.50 s",
    ):
        assert part in text
