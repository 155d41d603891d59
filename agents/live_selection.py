"""Which events of a replay's range to run again: the newest live write of each chapter.

A re-embed that runs every version it reads redoes history: a chapter revised fifty times
costs fifty flow runs for one live version. So a re-embed reads its whole range first and
then runs only each chapter's winner, when that winner is a write; deletions (chapter and
novel) are all passed on, in log order, because they cost no run and keep the target's
books right for the rounds that follow. The winner is decided as the live system and the
chaos oracle decide it (``tests/chaos/oracle.py``):

* events are ordered by their *origin* (a redriven copy stands where it was first logged);
* an event id seen before changes nothing (a re-sent duplicate, a redriven copy: the
  live system ignores them through the flow run's idempotency key);
* a ``novel.deleted`` beats every event of the novel logged before it;
* per chapter the newest version wins; at equal versions a deletion beats a write, and of
  two writes the later one wins.

Memory stays near the live chapters, not the log's bytes: per chapter only the candidates
that a later novel deletion could still make the winner are kept (an event with a higher
rank *and* a later origin than another makes that other one irrelevant), plus each event
id read (16 bytes and a set entry per event) to ignore duplicates.
Pure: no I/O; ``T`` is whatever the caller needs to replay an event (its message).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from schemas import ChapterCreated, ChapterDeleted, ChapterUpdated, NovelDeleted, NovelEvent

T = TypeVar("T")
#: ``(partition, offset)`` of an event's origin.
Origin = tuple[int, int]


@dataclass(frozen=True)
class _Candidate(Generic[T]):
    origin: Origin
    version: int
    deleted: bool
    item: T | None  # a write's message; None for a deletion (passed on anyway)

    @property
    def rank(self) -> tuple[int, bool]:
        return self.version, self.deleted

    def covers(self, other: _Candidate[T]) -> bool:
        """Whenever ``other`` could win, this one wins too: ranked at least as high and
        logged no earlier (so no novel deletion can void this one and not ``other``)."""
        return self.rank >= other.rank and self.origin >= other.origin


class LiveSelection(Generic[T]):
    """Collects a range's events (in any order of arrival), then yields what to replay."""

    def __init__(self) -> None:
        self._chapters: dict[tuple[str, str], list[_Candidate[T]]] = {}
        self._novel_deleted: dict[str, Origin] = {}
        self._deletions: list[tuple[Origin, T]] = []
        self._seen: set[int] = set()
        self.writes = 0
        self.duplicates = 0

    def add(self, event: NovelEvent, origin: Origin, item: T) -> None:
        """Take one valid event at its origin (events arrive in log order, so a copy or a
        re-sent duplicate comes after the event it repeats)."""
        if event.event_id.int in self._seen:
            self.duplicates += 1
            return
        self._seen.add(event.event_id.int)
        if isinstance(event, NovelDeleted):
            if origin > self._novel_deleted.get(event.novel_id, (-1, -1)):
                self._novel_deleted[event.novel_id] = origin
            self._deletions.append((origin, item))
            return
        if isinstance(event, ChapterDeleted):
            self._deletions.append((origin, item))
            self._keep(
                event.novel_id, event.chapter_id, _Candidate(origin, event.version, True, None)
            )
            return
        assert isinstance(event, ChapterCreated | ChapterUpdated)
        self.writes += 1
        self._keep(event.novel_id, event.chapter_id, _Candidate(origin, event.version, False, item))

    def _keep(self, novel: str, chapter: str, new: _Candidate[T]) -> None:
        kept = self._chapters.setdefault((novel, chapter), [])
        if any(old.covers(new) for old in kept):
            return
        kept[:] = [old for old in kept if not new.covers(old)] + [new]

    def _winners(self) -> Iterator[tuple[Origin, T]]:
        for (novel, _), kept in self._chapters.items():
            voided = self._novel_deleted.get(novel, (-1, -1))
            alive = [c for c in kept if c.origin > voided]
            if not alive:
                continue
            best = max(alive, key=lambda c: (c.rank, c.origin))
            if not best.deleted and best.item is not None:
                yield best.origin, best.item

    def selected(self) -> list[T]:
        """The winning writes and every deletion, in origin order."""
        chosen = [*self._winners(), *self._deletions]
        return [item for _, item in sorted(chosen, key=lambda pair: pair[0])]

    @property
    def skipped(self) -> int:
        """Writes read that will not run: older versions, or deleted since."""
        return self.writes - sum(1 for _ in self._winners())
