"""The sink on a real Milvus Lite server that goes away in the middle of a batch.

Found in review (issue 20): once the bounded retries of a resolved index ran out, the
result agent dead-lettered the result it was applying as if Milvus had refused it, so a
deletion whose Milvus went away after the batch's index was resolved was parked in the
dead-letter topic and the chapter stayed searchable. This module starts Milvus (and a
broker for the dead letters) and stops Milvus at the deletion's first write, so the
outage lands inside the batch every time. The books are SQLite; no other service.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from agents.index_catalog import SingleIndex
from agents.result_agent import ResultAgent, ResultMessage
from agents.retry import Backoff
from schemas import ChapterEmbedded, ChapterRemoved, ChunkVector, SourceRef
from streams.adapters.kafka.client import DeadLetterTopic, ensure_topics, start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.ledger.sqlite import SqliteLedger
from streams.adapters.milvus.store import MilvusVectorStore
from streams.embedded.processes import ManagedProcess, free_port, port_open
from streams.embedded.stack import kafka_process, milvus_process
from streams.settings import Settings
from tests.vector_store_contract import DIM, MODEL

pytestmark = pytest.mark.integration

DOWN_SECONDS = 20


def _wait_open(proc: ManagedProcess, port: int) -> None:
    deadline = time.monotonic() + 120
    while not port_open(port):
        proc.check_alive()
        assert time.monotonic() < deadline, proc.tail(40)
        time.sleep(0.5)


@pytest.fixture
def milvus() -> Iterator[tuple[ManagedProcess, Settings]]:
    """A Milvus Lite server of its own, which the test may stop and start, and a broker
    of its own for the dead letters."""
    with tempfile.TemporaryDirectory(prefix="scribe-milvus-") as data:
        settings = Settings(
            data_dir=Path(data),
            milvus_port=free_port(),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
        )
        kafka, proc = kafka_process(settings), milvus_process(settings)
        kafka.start()
        proc.start()
        try:
            _wait_open(kafka, settings.kafka_port)
            _wait_open(proc, settings.milvus_port)
            yield proc, settings
        finally:
            proc.stop()
            kafka.stop()


class GoesAwayAtTheFirstDelete(MilvusVectorStore):
    """The real store; its first ``delete_chapter`` stops the server, which comes back
    ``DOWN_SECONDS`` later (in a thread, as an operator would restart it)."""

    def __init__(self, proc: ManagedProcess, settings: Settings, alias: str) -> None:
        super().__init__(settings.milvus_url, alias)
        self._proc, self._port = proc, settings.milvus_port
        self.restarted: threading.Thread | None = None

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        if self.restarted is None:
            self._proc.stop()

            def restart() -> None:
                time.sleep(DOWN_SECONDS)
                self._proc.start()
                _wait_open(self._proc, self._port)

            self.restarted = threading.Thread(target=restart, daemon=True)
            self.restarted.start()
        await super().delete_chapter(novel_id, chapter_id)


async def _logged(kafka: KafkaConnection, topic: str) -> int:
    """How many records ``topic``'s one partition holds."""
    consumer = AIOKafkaConsumer(**kafka.client_config(), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, 0)])
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def _message(result: ChapterEmbedded | ChapterRemoved, offset: int) -> ResultMessage:
    source = SourceRef(topic="novel-events.embeddings", partition=0, offset=offset)
    return ResultMessage(b"n1", result.model_dump_json().encode(), source)


def test_a_deletion_whose_milvus_goes_away_mid_batch_waits_for_it(
    milvus: tuple[ManagedProcess, Settings],
) -> None:
    proc, settings = milvus
    alias = f"outage_{uuid.uuid4().hex[:8]}"
    written = ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id="c1",
        version=1,
        model=MODEL,
        dimension=DIM,
        pipeline_version="p",
        flow_run_id="run-1",
        chunks=tuple(
            ChunkVector(chunk_no=i, text=f"c1 #{i}", vector=tuple([1.0] * (DIM - 1) + [float(i)]))
            for i in range(3)
        ),
        source=SourceRef(topic="novel-events", partition=0, offset=1),
    )
    deleted = ChapterRemoved(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id="c1",
        version=2,
        source=SourceRef(topic="novel-events", partition=0, offset=2),
    )

    async def run() -> tuple[int, int, int]:
        kafka = KafkaConnection.from_settings(settings)
        await ensure_topics(kafka, [NewTopic(settings.topic_dlq, 1, 1)])
        producer = await start_producer(kafka, settings.max_result_bytes)
        store = GoesAwayAtTheFirstDelete(proc, settings, alias)
        ledger = SqliteLedger(settings.data_dir / "ledger.sqlite3", alias)
        dlq = DeadLetterTopic(producer, settings.topic_dlq)
        # The worker's retry policy, quicker: each resolved index is retried 3 times.
        agent = ResultAgent(
            catalog=SingleIndex(store, ledger),
            dead_letters=dlq,
            backoff=Backoff(initial=0.2, cap=2.0),
            reresolve_attempts=3,
        )
        try:
            await store.ensure_collection(MODEL, DIM)
            assert await agent.handle_batch([_message(written, 10)]) == 1
            assert await store.count("n1") == 3
            applied = await agent.handle_batch([_message(deleted, 11)])
            assert store.restarted is not None  # the outage happened inside the batch
            await asyncio.to_thread(store.restarted.join)
            return applied, await store.count("n1"), await _logged(kafka, settings.topic_dlq)
        finally:
            await producer.stop()
            await store.close()
            await ledger.close()

    applied, rows, letters = asyncio.run(run())
    assert letters == 0, "a deletion that met an outage is no dead letter"
    assert applied == 1
    assert rows == 0, "the deleted chapter is still searchable"
