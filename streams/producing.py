"""``scribe produce``: novel files or JSONL event files to the input topic."""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import Progress

from schemas import ConfigurationError
from streams.kafka import start_producer
from streams.novel_text import chapter_events, split_chapters
from streams.settings import Settings


def _messages(path: Path, novel: str | None, version: int) -> list[tuple[bytes | None, bytes]]:
    if path.suffix == ".jsonl":
        out: list[tuple[bytes | None, bytes]] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                key = json.loads(line).get("novel_id")
            except (json.JSONDecodeError, AttributeError):
                key = None  # sent as is: the worker dead-letters it with the reason
            out.append((str(key).encode() if key else None, line.encode()))
        return out
    novel_id = novel or path.stem.split(".")[0]
    chapters = split_chapters(path.read_text(encoding="utf-8"))
    if not chapters:
        raise ConfigurationError(f"{path} holds no text")
    return [
        (e.novel_id.encode(), e.model_dump_json().encode())
        for e in chapter_events(novel_id, chapters, version)
    ]


async def produce_file(
    settings: Settings,
    path: Path,
    novel: str | None,
    version: int,
    limit: int | None,
    progress: Progress,
) -> int:
    """Send the file's events keyed by novel_id; return how many were sent."""
    messages = _messages(path, novel, version)[:limit]
    producer = await start_producer(settings)
    try:
        with progress:
            task = progress.add_task(f"producing {path.name}", total=len(messages))
            for key, value in messages:
                await producer.send_and_wait(settings.topic_events, value=value, key=key)
                progress.advance(task)
    finally:
        await producer.stop()
    return len(messages)
