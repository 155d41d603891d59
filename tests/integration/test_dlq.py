"""``scribe dlq`` on real Kafka, each test on topics of its own (issue 19, hole 9).

The letters are written straight to a fresh DLQ topic and the CLI runs with that topic
and a fresh input topic, so a ``redrive --all`` here sends nothing into the pipeline the
other tests share.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import SourceRef
from schemas.dead_letters import H_ORIGIN_OFFSET, dead_letter_headers
from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.topics import ensure_scribe_topics
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Letter:
    """One dead letter to park: where it came from and why."""

    value: bytes
    source_topic: str
    origin_partition: int
    origin_offset: int
    error_class: str = "SchemaViolation"
    retriable: bool = False


def own_topics(stack: Stack) -> tuple[Settings, dict[str, str]]:
    """Fresh input, results and DLQ topics; the settings and the CLI environment for them."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "topic_events": f"dlq-events-{suffix}",
        "topic_embeddings": f"dlq-events-{suffix}.embeddings",
        "topic_dlq": f"dlq-events-{suffix}.dlq",
    }
    settings = stack.settings.model_copy(update=names)
    asyncio.run(ensure_scribe_topics(settings))
    return settings, {f"SCRIBE_{k.upper()}": v for k, v in names.items()}


def park(settings: Settings, key: bytes, letters: list[Letter]) -> None:
    """Write ``letters`` to the DLQ topic, each on the partition of its origin."""

    async def run() -> None:
        kafka = KafkaConnection.from_settings(settings)
        producer = await start_producer(kafka, settings.max_result_bytes)
        try:
            for letter in letters:
                source = SourceRef(
                    topic=letter.source_topic,
                    partition=letter.origin_partition,
                    offset=letter.origin_offset,
                )
                headers = dead_letter_headers(source, letter.error_class, "test", letter.retriable)
                await producer.send_and_wait(
                    settings.topic_dlq,
                    value=letter.value,
                    key=key,
                    partition=letter.origin_partition,
                    headers=headers,
                )
        finally:
            await producer.stop()

    asyncio.run(run())


def read_topic(settings: Settings, topic: str) -> dict[int, list[tuple[bytes | None, int]]]:
    """Per partition of ``topic``: (value, ``scribe.origin.offset``) of each message."""

    async def run() -> dict[int, list[tuple[bytes | None, int]]]:
        kafka = KafkaConnection.from_settings(settings)
        consumer = AIOKafkaConsumer(**kafka.client_config(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: dict[int, list[tuple[bytes | None, int]]] = {tp.partition: [] for tp in tps}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                    for m in messages:
                        origin = dict(m.headers).get(H_ORIGIN_OFFSET, b"-1")
                        out[tp.partition].append((m.value, int(origin)))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_redrive_all_skips_letters_of_the_results_topic_and_redrives_the_rest(
    stack: Stack,
) -> None:
    """One letter from the results topic refused the whole ``--all --any-error`` batch."""
    settings, env = own_topics(stack)
    events, results = settings.topic_events, settings.topic_embeddings
    park(
        settings,
        b"novel-a",
        [
            Letter(b"{not json", events, 0, 3),
            Letter(b"{}", results, 0, 0, error_class="VectorStoreRejected"),
            Letter(b"{also not json", events, 0, 5, "FlowRunFailed", retriable=True),
        ],
    )
    redriven = stack.scribe("dlq", "redrive", "--all", "--any-error", env_extra=env)
    assert redriven.returncode == 0, redriven.stderr
    said = redriven.stdout + redriven.stderr
    assert "skipped 1 " in said and "0:1" in said and "not from the input topic" in said, said
    assert "redrove 2 " in said, said
    assert read_topic(settings, events)[0] == [(b"{not json", 3), (b"{also not json", 5)]

    named = stack.scribe("dlq", "redrive", "0:1", env_extra=env)
    assert named.returncode != 0
    assert "0:1" in named.stderr + named.stdout
    assert "input topic" in named.stderr + named.stdout


#: Runs the CLI and prints its peak resident memory (KiB) on stderr when it exits: the
#: ``VmHWM`` of its own address space (``ru_maxrss`` would include the forking parent's).
PEAK_RSS = (
    "import atexit, re, runpy, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    peak = re.search(r'VmHWM:\\s+(\\d+)', status).group(1)\n"
    "    print('peak-rss-kib=' + peak, file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['scribe', *sys.argv[1:]]\n"
    "runpy.run_module('streams.cli', run_name='__main__')\n"
)


def scribe_peak(stack: Stack, env: dict[str, str], *args: str) -> tuple[str, int]:
    """Run ``scribe ARGS``; its stdout and its peak RSS in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        env={**os.environ, **stack.env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = re.search(r"peak-rss-kib=(\d+)", done.stderr)
    assert peak is not None, done.stderr[-3000:]
    return done.stdout + done.stderr, int(peak.group(1)) // 1024


def test_dlq_list_and_redrive_all_stream_the_dlq_in_bounded_memory(stack: Stack) -> None:
    """``dlq list`` and ``redrive`` read the whole DLQ into memory: a DLQ of 112 MiB made
    ``list --limit 2`` hold 112 MiB. Listing keeps the last N while reading; redrive sends
    as it reads, each partition in offset order."""
    settings, env = own_topics(stack)
    _, empty = scribe_peak(stack, env, "dlq", "list", "--limit", "2", "--json")
    count, size, parts = 160, 700 * 1024, settings.topic_partitions
    letters = [
        Letter(bytes([i % 256]) + os.urandom(size), settings.topic_events, i % parts, 1000 + i)
        for i in range(count)
    ]
    park(settings, b"novel-big", letters)

    listed, peak = scribe_peak(stack, env, "dlq", "list", "--limit", "2", "--json")
    newest = json.loads(listed[: listed.rindex("]") + 1])
    assert [p["source"]["offset"] for p in newest] == [1000 + count - 2, 1000 + count - 1]
    assert peak - empty < 48, f"list --limit 2 peaked at {peak} MiB (empty DLQ: {empty} MiB)"

    said, peak = scribe_peak(stack, env, "dlq", "redrive", "--all", "--any-error")
    assert f"redrove {count} " in said, said
    assert peak - empty < 64, f"redrive --all peaked at {peak} MiB (empty DLQ: {empty} MiB)"
    redriven = read_topic(settings, settings.topic_events)
    for partition, messages in redriven.items():
        origins = [origin for _, origin in messages]
        assert origins == [1000 + i for i in range(partition, count, parts)], partition
        assert [v[:1] for v, _ in messages] == [bytes([(o - 1000) % 256]) for o in origins]
