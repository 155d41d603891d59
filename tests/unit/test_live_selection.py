"""A re-embed runs only each chapter's newest live write (issue 22): the selection, and
that it agrees with the chaos oracle on every seeded history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from agents.live_selection import LiveSelection
from prefect_bridge.chunking import estimate_tokens
from schemas import ChapterCreated, ChapterDeleted, ChapterUpdated, NovelDeleted, NovelEvent
from tests.chaos.history import MAX_TEXT_BYTES, Produce, generate_history
from tests.chaos.oracle import Logged, Position, expected_index, valid_event
from tests.chaos.test_oracle import POLICY

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def write(chapter: str, version: int, novel: str = "n") -> NovelEvent:
    kind = ChapterUpdated if version > 1 else ChapterCreated
    return kind(
        event_id=uuid.uuid4(),
        novel_id=novel,
        chapter_id=chapter,
        version=version,
        occurred_at=NOW,
        title="t",
        text=f"{chapter} v{version}",
    )


def chapter_deleted(chapter: str, version: int, novel: str = "n") -> NovelEvent:
    return ChapterDeleted(
        event_id=uuid.uuid4(), novel_id=novel, chapter_id=chapter, version=version, occurred_at=NOW
    )


def novel_deleted(novel: str = "n", version: int = 1) -> NovelEvent:
    return NovelDeleted(event_id=uuid.uuid4(), novel_id=novel, version=version, occurred_at=NOW)


def select(events: list[tuple[NovelEvent, int]]) -> tuple[list[str], LiveSelection[str]]:
    """Events at their origin offset (partition 0), labelled; the labels selected."""
    selection: LiveSelection[str] = LiveSelection()
    for event, offset in events:
        label = f"{event.event_type}:{getattr(event, 'chapter_id', '-')}:{event.version}"
        selection.add(event, (0, offset), label)
    return selection.selected(), selection


def test_only_the_newest_version_of_a_revised_chapter_runs() -> None:
    chosen, selection = select([(write("c1", v), v) for v in range(1, 51)])
    assert chosen == ["chapter.updated:c1:50"]
    assert (selection.writes, selection.skipped) == (50, 49)


def test_the_newest_version_wins_whatever_the_log_order() -> None:
    chosen, _ = select([(write("c1", 3), 0), (write("c1", 2), 1), (write("c2", 1), 2)])
    assert chosen == ["chapter.updated:c1:3", "chapter.created:c2:1"]


def test_a_deleted_chapter_runs_nothing_and_its_deletion_is_passed_on() -> None:
    chosen, selection = select(
        [(write("c1", 1), 0), (write("c1", 2), 1), (chapter_deleted("c1", 2), 2)]
    )
    assert chosen == ["chapter.deleted:c1:2"]
    assert selection.skipped == 2
    again, _ = select([(write("c1", 1), 0), (chapter_deleted("c1", 1), 1), (write("c1", 2), 2)])
    assert again == ["chapter.deleted:c1:1", "chapter.updated:c1:2"], "written again, newer"


def test_a_novel_written_again_after_its_deletion_runs_only_what_came_after() -> None:
    chosen, _ = select(
        [
            (write("c1", 1), 0),
            (write("c2", 4), 1),
            (novel_deleted(), 2),
            (write("c1", 1), 3),
        ]
    )
    assert chosen == ["novel.deleted:-:1", "chapter.created:c1:1"]


def test_a_redriven_novel_deletion_arriving_late_voids_only_what_came_before_it() -> None:
    """The copy stands at its origin (10): the v2 write logged at 5 is void, the v1 write
    logged at 20 wins although it was dropped behind v2 until the deletion arrived."""
    chosen, _ = select([(write("c1", 2), 5), (write("c1", 1), 20), (novel_deleted(), 10)])
    assert chosen == ["novel.deleted:-:1", "chapter.created:c1:1"]


def test_a_duplicate_or_a_redriven_copy_changes_nothing() -> None:
    first = write("c1", 1)
    chosen, selection = select([(first, 0), (novel_deleted(), 1), (first, 2)])
    assert chosen == ["novel.deleted:-:1"], "the re-sent write is the one logged before"
    assert selection.duplicates == 1


@pytest.mark.parametrize("seed", range(30))
def test_it_keeps_exactly_the_chapters_the_oracle_says_are_live(seed: int) -> None:
    history = generate_history(seed, 120)
    log: list[Logged] = []
    offsets: dict[int, int] = {}
    for op in history.ops:
        if not isinstance(op, Produce):
            continue
        partition = 0 if op.key is None else sum(op.key) % 3
        offsets[partition] = offsets.get(partition, -1) + 1
        log.append(Logged(Position(partition, offsets[partition]), op.key, op.value))
    oracle = expected_index(log, POLICY, estimate_tokens, MAX_TEXT_BYTES)

    selection: LiveSelection[NovelEvent] = LiveSelection()
    for message in log:
        event = valid_event(message, MAX_TEXT_BYTES)
        if event is not None:
            selection.add(event, (message.position.partition, message.position.offset), event)
    runs = {
        (e.novel_id, e.chapter_id): e.version
        for e in selection.selected()
        if isinstance(e, ChapterCreated | ChapterUpdated)
    }
    assert runs == dict(oracle.chapters), history.describe()
