"""Helpers of the integration tests (the services are started by conftest.py).

Real services for the integration tests, started once per session.

Kafka (Apache Kafka 4.x, KRaft, jars from Maven), PostgreSQL (Debian's server, a private
cluster), a Prefect server on that PostgreSQL, a Milvus Lite server, and then the two
scribe processes under test: ``scribe flows serve`` (Prefect process worker) and
``scribe worker`` (Faust). Set ``SCRIBE_KAFKA_BOOTSTRAP_SERVERS`` to use an existing
broker instead of starting one; topics and the consumer group get a per-session suffix.
"""

from __future__ import annotations

import asyncio
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
from aiokafka import AIOKafkaProducer

from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.milvus.store import MilvusVectorStore
from streams.embedded.processes import ManagedProcess
from streams.embedded.stack import EmbeddedStack
from streams.settings import Settings


@dataclass
class Stack:
    """Handles on the running services for tests."""

    settings: Settings
    env: dict[str, str]
    stack: EmbeddedStack
    runner: ManagedProcess
    worker: ManagedProcess
    extra: dict[str, Any] = field(default_factory=dict)

    def scribe(
        self, *args: str, timeout: float = 120, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``scribe`` CLI against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env={**os.environ, **self.env, **(env_extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def kafka(self) -> KafkaConnection:
        """How a Kafka client reaches this stack's broker."""
        return KafkaConnection.from_settings(self.settings)

    async def start_producer(self) -> AIOKafkaProducer:
        """A started idempotent, acks=all producer (scribe's own, with its size limit)."""
        return await start_producer(self.kafka, self.settings.max_result_bytes)

    async def produce(self, messages: list[tuple[bytes | None, bytes | None]]) -> None:
        """Send raw messages to the input topic and wait for the acknowledgements."""
        producer = await self.start_producer()
        try:
            for key, value in messages:
                await producer.send_and_wait(self.settings.topic_events, value=value, key=key)
        finally:
            await producer.stop()

    def store(self) -> MilvusVectorStore:
        """A client of the index alias."""
        return MilvusVectorStore(self.settings.milvus_url, self.settings.milvus_collection)

    def prefect(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> Any:
        """Call the Prefect REST API (POST with a JSON body by default)."""
        response = httpx.request(
            method, f"{self.settings.prefect_url}{path}", json=body, timeout=30
        )
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


def service(stack: Stack, name: str) -> ManagedProcess:
    """One of the embedded services (kafka, milvus, postgres, prefect)."""
    return next(p for p in stack.stack.processes if p.name == name)


def restart_service(stack: Stack, name: str, down_seconds: float) -> None:
    """Stop a service, keep it down, start it again and wait until it answers."""
    from streams.embedded.processes import port_open
    from streams.embedded.stack import prefect_healthy

    proc = service(stack, name)
    proc.stop()
    time.sleep(down_seconds)
    proc.start()
    s = stack.settings
    ready: dict[str, Callable[[], bool]] = {
        "kafka": lambda: port_open(s.kafka_port),
        "milvus": lambda: port_open(s.milvus_port),
        "prefect": lambda: prefect_healthy(s.prefect_url),
        "postgres": lambda: port_open(stack.stack.postgres_port or 0),
    }
    wait_for(ready[name], 180, f"{name} back up")


def index_of(stack: Stack, novel: str) -> dict[str, tuple[set[int], list[int], list[str]]]:
    """Per chapter of ``novel`` in Milvus: versions, sorted chunk numbers, ids."""

    async def query() -> list[dict[str, Any]]:
        store = stack.store()
        try:
            return await store.query_rows(
                f'novel_id == "{novel}"', ["id", "chapter_id", "chapter_version", "chunk_no"]
            )
        finally:
            await store.close()

    try:
        rows = asyncio.run(query())
    except Exception:
        return {}
    out: dict[str, tuple[set[int], list[int], list[str]]] = {}
    for r in rows:
        versions, chunks, ids = out.setdefault(r["chapter_id"], (set(), [], []))
        versions.add(int(r["chapter_version"]))
        chunks.append(int(r["chunk_no"]))
        ids.append(r["id"])
    for _, chunks, _ in out.values():
        chunks.sort()
    return out


def converged(
    stack: Stack, novel: str, expected: dict[str, tuple[int, int]]
) -> dict[str, tuple[set[int], list[int], list[str]]] | None:
    """The index holds exactly ``expected`` (chapter -> (version, chunk count)), else None."""
    index = index_of(stack, novel)
    if set(index) != set(expected):
        return None
    for chapter, (version, count) in expected.items():
        versions, chunks, ids = index[chapter]
        if versions != {version} or chunks != list(range(count)) or len(set(ids)) != len(ids):
            return None
    return index


def not_pending(stack: Stack, novel: str, chapter: str) -> bool:
    """The live ledger holds no pending row for the chapter (none at all is fine)."""
    from streams.wiring import open_live_ledger

    async def row() -> Any:
        ledger = await open_live_ledger(stack.settings)
        try:
            return await ledger.chapter(novel, chapter)
        finally:
            await ledger.close()

    state = asyncio.run(row())
    return state is None or state.status != "pending"
