"""Crashes between two writes, at the failpoints of ``schemas.failpoints``, on real services.

Each test restarts a process with ``SCRIBE_FAILPOINTS`` armed, lets it crash where a kill -9
would leave the most damage, restarts it clean, and checks the index against what the log
says. What must hold: every effect happens before the record that says it happened, so a
redelivery after any crash redoes what is missing and nothing else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas import ChapterEmbedded, parse_result
from schemas.failpoints import CRASH_EXIT, ENV
from streams.embedded.processes import ManagedProcess
from tests.integration.harness import Stack, event, index_of, wait_for

TEXT = "唐僧师徒四人来到火焰山，八百里火焰，四周寸草不生。" * 6


@contextmanager
def crashing_at(stack: Stack, proc: ManagedProcess, failpoint: str) -> Iterator[None]:
    """Restart ``proc`` with ``failpoint`` armed; on leaving, wait for its crash there and
    restart it clean (the supervisor's part)."""
    clean = dict(proc.env)
    proc.stop()
    proc.env = {**clean, ENV: failpoint}
    proc.start()
    try:
        yield
        wait_for(lambda: not proc.running, 120, f"{proc.name} to crash at {failpoint}")
    finally:
        code = proc.proc.returncode if proc.proc is not None else None
        proc.stop()
        proc.env = clean
        proc.start()
    assert code == CRASH_EXIT, f"{proc.name} ended with {code}, not at {failpoint}:\n{proc.tail()}"


def embedded_results(stack: Stack, novel: str) -> list[tuple[bytes | None, bytes]]:
    """The raw ``chapter.embedded`` messages of ``novel`` on the results topic."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            stack.settings.topic_embeddings,
            bootstrap_servers=stack.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=stack.settings.max_result_bytes,
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000, max_records=100000)
            return [m for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()

    found = []
    for m in asyncio.run(read()):
        if m.key == novel.encode() and b"chapter.embedded" in (m.value or b""):
            result = parse_result(m.value)
            if isinstance(result, ChapterEmbedded):
                found.append((m.key, m.value))
    return found


async def resend(stack: Stack, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Send ``messages`` to the results topic again, as a redelivery or a resink would."""
    producer = await stack.start_producer()
    try:
        for key, value in messages:
            await producer.send_and_wait(stack.settings.topic_embeddings, value=value, key=key)
    finally:
        await producer.stop()


def test_a_sink_crash_between_ledger_writes_never_brings_a_deleted_chapter_back(
    stack: Stack,
) -> None:
    """Defect: the sink recorded a deletion as applied (its removal mark) before the
    chapter's row said so, in another transaction. Killed between the two, the redelivered
    deletion was skipped as "applied already", the ledger still said version 1 was indexed,
    and a late copy of version 1's result (a redelivery, a resink) brought the deleted
    chapter back into the index."""
    novel = f"crash-{uuid.uuid4().hex[:6]}"
    key = novel.encode()
    asyncio.run(
        stack.produce([(key, event("chapter.created", novel, "c1", 1, title="甲", text=TEXT))])
    )
    wait_for(lambda: set(index_of(stack, novel)) == {"c1"}, 300, "c1 indexed", stack)
    late = wait_for(lambda: embedded_results(stack, novel), 30, "c1's result on the topic")

    with crashing_at(stack, stack.worker, "sink.between_ledger_writes"):
        asyncio.run(stack.produce([(key, event("chapter.deleted", novel, "c1", 2))]))

    asyncio.run(resend(stack, late))  # a late copy of version 1's result
    # A marker after it in the same partition: once it is indexed, the copy was decided.
    asyncio.run(
        stack.produce([(key, event("chapter.created", novel, "c2", 1, title="乙", text=TEXT))])
    )
    wait_for(lambda: "c2" in index_of(stack, novel), 300, "c2 indexed", stack)
    assert set(index_of(stack, novel)) == {"c2"}, "the deleted chapter c1 came back"
