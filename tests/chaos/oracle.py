"""What the index must hold after a given log of ``novel-events``: the oracle (pure, no I/O).

The index is a function of the log alone, whatever crashed, stalled, was redelivered or
replayed on the way. This module is that function, written to be read:

* A message is *invalid* when :func:`schemas.parse_event` rejects it (bad UTF-8, not JSON,
  unknown type, missing or wrong fields, a newer schema version, text over the limit) or
  when its key is not its ``novel_id`` (or it has none). It goes to the DLQ and has no other effect.
* Messages are taken in log order per partition. A copy written by ``scribe dlq redrive``
  takes the position where the message was first logged (a redrive never moves an event
  later); an invalid copy is dead-lettered again, at that same position.
* An event id seen before (a re-sent duplicate, a redriven copy) changes nothing.
* ``novel.deleted`` removes every row of the novel and beats every event logged before it:
  a novel written again afterwards holds only what came after the deletion.
* Per chapter the newest ``version`` wins; at equal versions a delete beats a write. Two
  different writes at one version are outside the contract (the platform never sends
  them); here the later one in the log wins, the live system promises neither.
* A write logged after a deletion of its chapter (since the novel's last deletion) whose
  version is not above the deleted one can never win; its result may be parked.
* The index holds, for every chapter whose winner is a write, the chunks that the chunker
  makes of that version's text: id ``<novel>:<chapter>:<chunk_no>``, the version, the text.

Operator actions (``scribe replay`` of any kind, ``scribe dlq redrive``) write nothing to
the index that the log does not already say, so they are not an input here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agents.vector_store import MAX_TEXT_CHARS, row_id
from prefect_bridge.chunking import ChunkingPolicy, TokenCounter, chunk_text
from schemas import (
    DEFAULT_MAX_TEXT_BYTES,
    ChapterDeleted,
    InvalidEvent,
    NovelDeleted,
    NovelEvent,
    parse_event,
)


@dataclass(frozen=True, order=True)
class Position:
    """Where a message sits in ``novel-events``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Logged:
    """One message of ``novel-events`` as the log holds it."""

    position: Position
    key: bytes | None
    value: bytes | None
    #: A copy written by ``scribe dlq redrive``: where the message was first logged
    #: (headers ``scribe.origin.partition`` / ``scribe.origin.offset``).
    redrive_of: Position | None = None

    @property
    def origin(self) -> Position:
        """The position that orders this message's effects."""
        return self.redrive_of or self.position


@dataclass(frozen=True)
class Row:
    """One chunk row of the index, reduced to what the oracle can know (no vector)."""

    id: str
    novel_id: str
    chapter_id: str
    version: int
    chunk_no: int
    text: str


@dataclass(frozen=True)
class Expected:
    """The exact index and dead letters that the log calls for."""

    #: Every row, by id.
    rows: Mapping[str, Row]
    #: Every live chapter (a write won) with its version, rows or not (empty text: none).
    chapters: Mapping[tuple[str, str], int]
    #: Positions (origins) of the invalid messages.
    dead_letters: frozenset[Position]
    #: Positions (origins) of writes logged after a deletion of their chapter at a version
    #: at least theirs: they can never win, and the sink may park their result
    #: (``RecreatedBelowDeletion``; not when a later deletion applied first).
    may_park: frozenset[Position] = frozenset()

    def describe(self) -> str:
        """Rows per novel and chapter, and the DLQ, one line each."""
        lines = [
            f"expected index: {len(self.rows)} rows, {len(self.chapters)} live chapters, "
            f"{len(self.dead_letters)} dead letters"
        ]
        counts: dict[tuple[str, str], int] = dict.fromkeys(self.chapters, 0)
        for row in self.rows.values():
            counts[(row.novel_id, row.chapter_id)] += 1
        novels = sorted({novel for novel, _ in self.chapters})
        for novel in novels:
            chapters = sorted(c for n, c in self.chapters if n == novel)
            total = sum(counts[(novel, c)] for c in chapters)
            lines.append(f"  {novel}: {len(chapters)} chapters, {total} rows")
            lines += [
                f"    {c} v{self.chapters[(novel, c)]}: {counts[(novel, c)]} rows" for c in chapters
            ]
        if self.dead_letters:
            lines.append("  dead letters: " + " ".join(map(str, sorted(self.dead_letters))))
        return "\n".join(lines)


@dataclass(frozen=True)
class _Winner:
    """The event that decides a chapter so far."""

    version: int
    deleted: bool
    text: str = field(default="", repr=False)

    def beats(self, other: _Winner | None) -> bool:
        """Newest version wins; at equal versions a delete beats a write; else the later."""
        if other is None:
            return True
        if self.version != other.version:
            return self.version > other.version
        return self.deleted or not other.deleted


def valid_event(message: Logged, max_text_bytes: int) -> NovelEvent | None:
    """The event, or ``None`` when the chapter agent must dead-letter the message."""
    try:
        event = parse_event(message.value, max_text_bytes=max_text_bytes)
    except InvalidEvent:
        return None
    if message.key != event.novel_id.encode():  # no key, or another novel's
        return None
    return event


def expected_index(
    log: Iterable[Logged],
    policy: ChunkingPolicy,
    count_tokens: TokenCounter,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> Expected:
    """The index and the dead letters that ``log`` calls for (see the module docstring).

    ``policy`` and ``count_tokens`` must be the pipeline's (the runner counts tokens with
    the embedder's tokenizer); ``max_text_bytes`` the worker's ``SCRIBE_MAX_TEXT_BYTES``.
    Raises ``ValueError`` if a novel's valid events span partitions: then no order between
    them exists and no index is "correct".
    """
    novels: dict[str, dict[str, _Winner]] = {}
    partition_of: dict[str, int] = {}
    seen: set[str] = set()
    dead: set[Position] = set()
    deleted_at: dict[str, dict[str, int]] = {}  # per novel: chapter -> highest deletion
    may_park: set[Position] = set()
    for message in sorted(log, key=lambda m: (m.origin, m.redrive_of is not None)):
        event = valid_event(message, max_text_bytes)
        if event is None:
            dead.add(message.origin)
            continue
        if str(event.event_id) in seen:
            continue
        seen.add(str(event.event_id))
        partition = partition_of.setdefault(event.novel_id, message.origin.partition)
        if partition != message.origin.partition:
            raise ValueError(
                f"novel {event.novel_id!r} has events in partitions {partition} and "
                f"{message.origin.partition}: its events are not ordered"
            )
        chapters = novels.setdefault(event.novel_id, {})
        deletions = deleted_at.setdefault(event.novel_id, {})
        if isinstance(event, NovelDeleted):
            chapters.clear()
            deletions.clear()
            continue
        if isinstance(event, ChapterDeleted):
            candidate = _Winner(event.version, deleted=True)
            deletions[event.chapter_id] = max(event.version, deletions.get(event.chapter_id, 0))
        else:
            candidate = _Winner(event.version, deleted=False, text=event.text)
            if deletions.get(event.chapter_id, 0) >= event.version:
                may_park.add(message.origin)
        if candidate.beats(chapters.get(event.chapter_id)):
            chapters[event.chapter_id] = candidate

    rows: dict[str, Row] = {}
    live: dict[tuple[str, str], int] = {}
    for novel_id, chapters in sorted(novels.items()):
        for chapter_id, winner in sorted(chapters.items()):
            if winner.deleted:
                continue
            live[(novel_id, chapter_id)] = winner.version
            for chunk in chunk_text(winner.text, policy, count_tokens):
                rid = row_id(novel_id, chapter_id, chunk.chunk_no)
                rows[rid] = Row(
                    rid,
                    novel_id,
                    chapter_id,
                    winner.version,
                    chunk.chunk_no,
                    chunk.text[:MAX_TEXT_CHARS],
                )
    return Expected(rows, live, frozenset(dead), frozenset(may_park))
