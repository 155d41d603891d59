"""Helpers of the integration tests (the services are started by conftest.py).

Real services for the integration tests, started once per session.

Kafka (Apache Kafka 4.x, KRaft, jars from Maven), PostgreSQL (Debian's server, a private
cluster), a Prefect server on that PostgreSQL, a Milvus Lite server, and then the two
scribe processes under test: ``scribe flows serve`` (Prefect process worker) and
``scribe worker`` (Faust). Set ``SCRIBE_KAFKA_BOOTSTRAP_SERVERS`` to use an existing
broker instead of starting one; topics and the consumer group get a per-session suffix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from agents.vector_store import MilvusVectorStore
from streams.kafka import start_producer
from streams.processes import ManagedProcess
from streams.settings import Settings
from streams.stack import EmbeddedStack


@dataclass
class Stack:
    """Handles on the running services for tests."""

    settings: Settings
    env: dict[str, str]
    stack: EmbeddedStack
    runner: ManagedProcess
    worker: ManagedProcess
    extra: dict[str, Any] = field(default_factory=dict)

    def scribe(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the ``scribe`` CLI against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    async def produce(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Send raw messages to the input topic and wait for the acknowledgements."""
        producer = await start_producer(self.settings)
        try:
            for key, value in messages:
                await producer.send_and_wait(self.settings.topic_events, value=value, key=key)
        finally:
            await producer.stop()

    def store(self) -> MilvusVectorStore:
        """A client of the index alias."""
        return MilvusVectorStore(self.settings.milvus_url, self.settings.milvus_collection)

    def prefect(self, path: str, body: dict[str, Any]) -> Any:
        """POST to the Prefect REST API."""
        response = httpx.post(f"{self.settings.prefect_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def check_alive(self) -> None:
        """Fail fast with the log tail if a process under test died."""
        for proc in (self.runner, self.worker):
            proc.check_alive()


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    stack: Stack | None = None,
    interval: float = 1.0,
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with context after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if stack is not None:
            stack.check_alive()
        last = check()
        if last:
            return last
        time.sleep(interval)
    logs = ""
    if stack is not None:
        logs = f"\nworker:\n{stack.worker.tail(40)}\nrunner:\n{stack.runner.tail(40)}"
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{logs}")


def event(event_type: str, novel: str, chapter: str | None, version: int, **extra: Any) -> bytes:
    """A v1 input event as JSON bytes."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "novel_id": novel,
        "version": version,
        "occurred_at": "2026-11-28T12:00:00Z",
        **extra,
    }
    if chapter is not None:
        body["chapter_id"] = chapter
    return json.dumps(body, ensure_ascii=False).encode()
