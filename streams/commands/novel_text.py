"""Turning a novel's text file into chapter events (pure: no I/O)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import ChapterCreated, ChapterUpdated

# 第一回 / 第12章 / Chapter 3 / CHAPTER IV, at the start of a line (after optional
# indentation and a volume label such as "上卷").
CHAPTER_HEADING = re.compile(
    r"^[ \t\u3000]*(?:\S{1,4}卷[ \t\u3000]*)?"
    r"(?P<head>第[0-9一二三四五六七八九十百千零〇两]+[回章节]|(?i:chapter)\s+[0-9IVXLCDM]+\b)"
    r"(?P<rest>[^\n]*)$",
    re.MULTILINE,
)
_NAMESPACE = uuid.UUID("6c1f0e0a-3b0e-4c39-9a7e-5d0c0e0b5c11")


@dataclass(frozen=True)
class ChapterText:
    """A chapter cut out of a novel: its number (1-based), heading and body."""

    number: int
    title: str
    text: str


def split_chapters(text: str) -> list[ChapterText]:
    """Split on chapter headings; text before the first heading is dropped (front matter).

    A text without any heading is one chapter.
    """
    matches = list(CHAPTER_HEADING.finditer(text))
    if not matches:
        body = text.strip()
        return [ChapterText(1, "", body)] if body else []
    chapters = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        title = (match.group("head") + match.group("rest")).strip().replace("\u3000", " ")
        body = text[match.end() : end].strip()
        chapters.append(ChapterText(i + 1, title, body))
    return chapters


def chapter_id(number: int) -> str:
    """``ch0001`` style ids: sortable and valid in the event contract."""
    return f"ch{number:04d}"


def event_id_for(novel_id: str, chapter: str, version: int, text: str) -> uuid.UUID:
    """Deterministic event id: producing the same file twice yields the same events."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    return uuid.uuid5(_NAMESPACE, f"{novel_id}/{chapter}@{version}:{digest}")


def chapter_events(
    novel_id: str, chapters: list[ChapterText], version: int = 1, now: datetime | None = None
) -> list[ChapterCreated | ChapterUpdated]:
    """``chapter.created`` events (``chapter.updated`` when ``version`` > 1)."""
    occurred = now or datetime.now(UTC)
    events: list[ChapterCreated | ChapterUpdated] = []
    for ch in chapters:
        cid = chapter_id(ch.number)
        common = {
            "event_id": event_id_for(novel_id, cid, version, ch.text),
            "novel_id": novel_id,
            "chapter_id": cid,
            "version": version,
            "occurred_at": occurred,
            "title": ch.title,
            "text": ch.text,
        }
        if version == 1:
            events.append(ChapterCreated(**common))
        else:
            events.append(ChapterUpdated(**common))
    return events
