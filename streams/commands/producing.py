"""``scribe produce``: novel files or JSONL event files to the input topic."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.progress import Progress

from schemas import ConfigurationError
from streams.adapters.kafka.client import partitions_of, start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.commands.novel_text import chapter_events, split_chapters
from streams.settings import Settings


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _messages(path: Path, novel: str | None, version: int) -> list[tuple[bytes | None, bytes]]:
    if path.suffix == ".jsonl":
        out: list[tuple[bytes | None, bytes]] = []
        for line in _read(path).splitlines():
            if not line.strip():
                continue
            try:
                key = json.loads(line).get("novel_id")
            except (ValueError, AttributeError):  # not JSON, or not UTF-8
                key = None  # sent as is: the worker dead-letters it with the reason
            out.append((str(key).encode() if key else None, line))
        return out
    novel_id = novel or path.stem.split(".")[0]
    try:
        text = _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path} is not UTF-8 text (byte {exc.start}); convert it first, e.g. "
            f"iconv -f GB18030 -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from exc
    chapters = split_chapters(text)
    if not chapters:
        raise ConfigurationError(f"{path} holds no text")
    return [
        (e.novel_id.encode(), e.model_dump_json().encode())
        for e in chapter_events(novel_id, chapters, version)
    ]


def event_id_of(value: bytes) -> str | None:
    """The ``event_id`` field of a message value, or None when it has none (or is no JSON)."""
    try:
        found = json.loads(value).get("event_id")
    except (ValueError, AttributeError):  # not JSON / not an object: no id to match
        return None
    return str(found) if found is not None else None


async def event_ids_on_topic(settings: Settings, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` event ids the input topic holds already (reads it to its end).

    Stops as soon as every wanted id was seen; meant for small topics (``scribe dev``),
    it reads every partition from the beginning otherwise.
    """
    if not wanted:
        return set()
    kafka, topic = KafkaConnection.from_settings(settings), settings.topic_events
    partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    if not partitions:
        return set()
    consumer = AIOKafkaConsumer(**kafka.client_config(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        left = {tp for tp in partitions if ends[tp] > 0}
        seen: set[str] = set()
        while left and seen != wanted:
            batches = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    found = event_id_of(record.value or b"")
                    if found in wanted:
                        seen.add(found)
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        return seen
    finally:
        await consumer.stop()


async def open_event_producer(settings: Settings) -> AIOKafkaProducer:
    """The idempotent, acks=all producer :func:`produce_file` sends with."""
    return await start_producer(KafkaConnection.from_settings(settings), settings.max_result_bytes)


@dataclass(frozen=True)
class Produced:
    """What :func:`produce_file` did: events sent, and events skipped as already there."""

    sent: int
    already_there: int


async def produce_file(
    settings: Settings,
    path: Path,
    novel: str | None,
    version: int,
    limit: int | None,
    progress: Progress,
    *,
    skip_present: bool = False,
    find_present: Callable[[Settings, set[str]], Awaitable[set[str]]] = event_ids_on_topic,
    open_producer: Callable[[Settings], Awaitable[Any]] = open_event_producer,
) -> Produced:
    """Send the file's events keyed by novel_id.

    With ``skip_present``, events whose ``event_id`` the topic holds already are not sent
    again (chapter events of a novel file have deterministic ids, so ``scribe dev
    --sample`` produces the sample once, not on every start).
    """
    messages = _messages(path, novel, version)[:limit]
    skipped = 0
    if skip_present:
        ids = {i for i in (event_id_of(v) for _, v in messages) if i is not None}
        present = await find_present(settings, ids)
        kept = [(k, v) for k, v in messages if event_id_of(v) not in present]
        skipped = len(messages) - len(kept)
        messages = kept
    if not messages:
        return Produced(0, skipped)
    producer = await open_producer(settings)
    try:
        with progress:
            task = progress.add_task(f"producing {path.name}", total=len(messages))
            for key, value in messages:
                await producer.send_and_wait(settings.topic_events, value=value, key=key)
                progress.advance(task)
    finally:
        await producer.stop()
    return Produced(len(messages), skipped)
