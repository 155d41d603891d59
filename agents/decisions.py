"""Pure decisions of the agents: what to do with an input event, whether a result applies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas import (
    LIVE,
    ChapterCreated,
    ChapterDeleted,
    ChapterEmbedded,
    ChapterFailed,
    ChapterRemoved,
    ChapterUpdated,
    NovelDeleted,
    NovelEvent,
    NovelRemoved,
    SourceRef,
    Target,
)


@dataclass(frozen=True)
class SubmitFlowRun:
    """Ask Prefect for one run of the processing deployment."""

    name: str
    idempotency_key: str
    tags: list[str]
    parameters: dict[str, Any]


@dataclass(frozen=True)
class PublishRemoval:
    """Send a deletion straight to the results topic (ordered there with embeddings)."""

    result: ChapterRemoved | NovelRemoved


@dataclass(frozen=True)
class IgnoreEvent:
    """Do nothing: the event stands before a deletion of its novel that already applied.

    ``remember``: the ledger must keep the event id as settled, so that the same event
    re-sent later (standing after the deletion by its own offset) is left out too.
    """

    reason: str
    remember: bool = False


ChapterPlan = SubmitFlowRun | PublishRemoval | IgnoreEvent


def run_name(novel_id: str, chapter_id: str, version: int) -> str:
    """The readable flow-run name shown in the Prefect UI."""
    return f"{novel_id}/{chapter_id}@v{version}"


def idempotency_key(event_id: str, pipeline_version: str, redrive: int = 0) -> str:
    """Same event and pipeline version: same flow run; a new pipeline version: a new run.

    A redriven event (``scribe dlq redrive``, ``redrive`` > 0) gets a new run too.
    """
    key = f"{event_id}:{pipeline_version}"
    return f"{key}:r{redrive}" if redrive else key


def plan_event(
    event: NovelEvent,
    source: SourceRef,
    pipeline_version: str,
    redrive: int = 0,
    target: Target = LIVE,
    novel_deleted_offset: int | None = None,
    superseded: bool = False,
) -> ChapterPlan:
    """Turn one valid input event into the single effect the chapter agent must cause.

    ``target`` names the collection of a full rebuild (``scribe replay``); the flow run
    and the removal carry it so only that rebuild's sink applies them. A chapter write
    that stands before its novel's applied deletion (``novel_deleted_offset``, e.g. one
    redriven from the DLQ after the novel was deleted) is ignored: its result could only
    be skipped, and its submission would be recorded as pending for good. So is the same
    event re-sent after the deletion (``superseded``: its id was left out so before): it is
    the write the deletion beat, not a new one (chaos seed 616: the deletion applied ahead
    of the worker, which left the original out and then ran its re-sent copy).
    """
    if isinstance(event, ChapterCreated | ChapterUpdated):
        if novel_deleted_offset is not None and source.offset < novel_deleted_offset:
            return IgnoreEvent(
                f"the novel was deleted later in the log (offset {novel_deleted_offset})",
                remember=True,
            )
        if superseded:
            return IgnoreEvent(
                "a re-send of a write that its novel's deletion left out already",
                remember=True,
            )
        # The event's position and identity, not its text: the flow reads the event from
        # Kafka, so Prefect's database and UI hold a few hundred bytes per run.
        parameters: dict[str, Any] = {
            "source": source.model_dump(mode="json", exclude_none=True),
            "event_id": str(event.event_id),
            "novel_id": event.novel_id,
            "chapter_id": event.chapter_id,
            "version": event.version,
            "redrive": redrive,
        }
        tags = [f"novel:{event.novel_id}", f"chapter:{event.chapter_id}", event.event_type]
        if target.tag is not None:
            parameters["target"] = target.wire
            tags.append(target.tag)
        return SubmitFlowRun(
            name=run_name(event.novel_id, event.chapter_id, event.version),
            idempotency_key=idempotency_key(str(event.event_id), pipeline_version, redrive),
            tags=tags,
            parameters=parameters,
        )
    common = {
        "event_id": event.event_id,
        "novel_id": event.novel_id,
        "version": event.version,
        "target": target,
    }
    if isinstance(event, ChapterDeleted):
        return PublishRemoval(ChapterRemoved(**common, chapter_id=event.chapter_id, source=source))
    assert isinstance(event, NovelDeleted)
    return PublishRemoval(NovelRemoved(**common, source=source))


ChapterStatus = Literal["pending", "indexed", "deleted", "failed"]


@dataclass(frozen=True)
class ChapterState:
    """The ledger's row for one chapter (the event-sourced read model).

    ``version`` is the newest version applied to the index (embedded or deleted, see
    ``deleted``); ``latest_version`` the newest seen on the input topic; a processing
    failure of ``failed_version`` is remembered until a version at least as new applies.
    ``deleted_offset`` is the input-log offset of the deletion applied last (``None`` when
    the chapter is not deleted, or for a deletion recorded before offsets were kept).
    """

    novel_id: str
    chapter_id: str
    version: int
    deleted: bool
    indexed_version: int | None = None
    model: str | None = None
    chunk_count: int = 0
    flow_run_id: str | None = None
    updated_at: datetime | None = None
    latest_version: int = 0
    failed_version: int | None = None
    error: str | None = None
    #: Offset in the input log of the event whose effect this row records (unknown: None).
    source_offset: int | None = None
    deleted_offset: int | None = None

    @property
    def status(self) -> ChapterStatus:
        """failed > pending > deleted > indexed, from the versions."""
        newest = max(self.latest_version, self.version)
        if self.failed_version is not None and self.failed_version >= newest:
            return "failed"
        if self.latest_version > self.version:
            return "pending"
        return "deleted" if self.deleted else "indexed"

    @property
    def deleted_version(self) -> int | None:
        """The version at which the chapter was deleted, if it is deleted."""
        return self.version if self.deleted else None


@dataclass(frozen=True)
class Apply:
    """Write the result's effect to the vector store."""


@dataclass(frozen=True)
class Skip:
    """Ignore the result: something newer already won. With ``dead_letter`` the result
    can never win and the operator must hear of it (it is parked with the reason)."""

    reason: str
    dead_letter: bool = False


SinkDecision = Apply | Skip
IndexResult = ChapterEmbedded | ChapterRemoved | NovelRemoved


def decide_result(
    result: IndexResult, chapter: ChapterState | None, novel_deleted_offset: int | None
) -> SinkDecision:
    """Newest wins: a result applies unless a newer version or a delete already did.

    * chapter results: higher ``version`` wins; at equal versions a delete beats an
      embedding; re-applying the same embedded version is allowed (idempotent).
    * a novel deletion beats every result derived from an input event logged before it
      (events of one novel share a partition, so source offsets order them).
    """
    if isinstance(result, NovelRemoved):
        if novel_deleted_offset is not None and _offset(result.source) < novel_deleted_offset:
            return Skip("a later novel deletion was already applied")
        return Apply()
    if (
        novel_deleted_offset is not None
        and result.source is not None
        and result.source.offset < novel_deleted_offset
    ):
        return Skip("the novel was deleted later in the log")
    if chapter is None:
        return Apply()
    recreated = _recreated_below_deletion(result, chapter)
    if recreated is not None:
        return recreated
    if result.version < chapter.version:
        return Skip(f"version {result.version} is older than {chapter.version}")
    if (
        isinstance(result, ChapterEmbedded)
        and result.version == chapter.version
        and chapter.deleted
    ):
        return Skip(f"version {result.version} was deleted")
    return Apply()


def outlives_novel_deletion(chapter: ChapterState, deletion_offset: int) -> bool:
    """Whether a chapter's row (and its rows in the index) survive a novel deletion logged
    at ``deletion_offset``: only when the row records an event logged *after* it.

    That happens when the novel was written again after its deletion and the new write
    reached this index before the deletion did: a full rebuild's last round replays a
    deletion logged before its switch after live results of the switch landed in the new
    collection. A row of unknown position (submitted only, or older than positions in the
    ledger) counts as logged before.
    """
    return chapter.source_offset is not None and chapter.source_offset > deletion_offset


def _recreated_below_deletion(result: IndexResult, chapter: ChapterState) -> Skip | None:
    """A chapter written again after its deletion (later in the log) at a version not
    above the deleted one: newest wins, so it never can; the producer restarted its
    numbering. Skipped with a dead letter naming the deleted version, not silently. A
    result logged before the deletion (a replay, a redrive of history) is no news."""
    if not (isinstance(result, ChapterEmbedded) and chapter.deleted):
        return None
    if result.version > chapter.version or chapter.deleted_offset is None:
        return None
    if result.source is None or result.source.offset <= chapter.deleted_offset:
        return None
    return Skip(
        f"{result.novel_id}/{result.chapter_id} was deleted at version {chapter.version}"
        f" (offset {chapter.deleted_offset}) and written again later (offset"
        f" {result.source.offset}) at version {result.version}, which can never win:"
        f" re-create it with a version above {chapter.version}",
        dead_letter=True,
    )


def _offset(source: SourceRef | None) -> int:
    return source.offset if source is not None else -1


def decide_failure(
    failure: ChapterFailed, chapter: ChapterState | None, novel_deleted_offset: int | None
) -> SinkDecision:
    """Whether a ``chapter.failed`` report is recorded: only while nothing made it moot.

    A failure of a version that is already indexed or deleted at that version or newer (a
    success of the same version in the same batch, a retry that succeeded before the report
    was re-sent) says nothing about the index; neither does one from before the novel's
    deletion. Recording those would leave the chapter "failed" for good.
    """
    if (
        novel_deleted_offset is not None
        and failure.source is not None
        and failure.source.offset < novel_deleted_offset
    ):
        return Skip("the novel was deleted later in the log")
    if chapter is not None and chapter.version >= failure.version:
        state = "deleted" if chapter.deleted else "indexed"
        return Skip(f"version {chapter.version} is {state} already")
    return Apply()
