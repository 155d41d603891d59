"""A replay's rounds over the log, and a full rebuild's cut-over (see README: Replay).

In place, a replay reads to the end of the log as it was when it started. A full rebuild
reads in catch-up rounds (``streams.commands.cutover`` decides when to stop): after each
round it waits until the round has *settled* (its own runs ended, the worker applied their
results), reads the new end of the log and either reads again or points the alias at its
collection; one last round then applies what was logged until the switch. Chapters the
live index holds but the rebuild failed to make are run once more, and while any stays
missing it refuses to switch unless forced (:class:`Missing`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import RebuildIncomplete, Target
from streams.adapters.kafka.topic_reader import Start, TopicReader
from streams.adapters.milvus.store import MilvusVectorStore
from streams.commands.cutover import ReadAgain, Refuse, RetryMissing, decide_cutover
from streams.settings import Settings

log = logging.getLogger("scribe.replay")

Tick = Callable[[int, int], None]  # (done, total)
Feed = Callable[[list[Any]], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]
Chapter = tuple[str, str]  # (novel_id, chapter_id)


class Missing(Protocol):
    """What a full re-embed lacks: chapters whose runs failed for good in the rebuild while
    the live index holds them."""

    async def chapters(self) -> list[Chapter]:
        """The chapters missing now."""
        ...

    async def retry(self, chapters: list[Chapter]) -> None:
        """Run these chapters once more (their newest write) for the rebuild."""
        ...


class NothingMissing:
    """A resink makes no runs: nothing can fail in it."""

    async def chapters(self) -> list[Chapter]:
        """None."""
        return []

    async def retry(self, chapters: list[Chapter]) -> None:
        """Nothing to run."""


@dataclass
class ReplaySummary:
    """What a replay did."""

    mode: str
    scope: str
    read: int = 0
    skipped_other_novels: int = 0
    #: Flow runs submitted (a batch run is one), and the chapters they process.
    runs_submitted: int = 0
    chapters_submitted: int = 0
    #: Writes read but not run again: older versions, deleted since, or duplicates.
    versions_skipped: int = 0
    results_sent: int = 0
    copies_skipped: int = 0
    invalid_skipped: int = 0
    collection: str | None = None
    previous_collection: str | None = None
    pipeline_version: str | None = None
    #: A full rebuild's catch-up rounds before the switch, and the messages then left.
    rounds: int = 0
    switch_lag: int | None = None
    #: Chapters run again after failing in the rebuild; those missing at a forced switch.
    retried: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What every replay step needs."""

    settings: Settings
    summary: ReplaySummary
    start: Start
    novel: str | None
    target: Target
    live: str
    admin: MilvusVectorStore
    tick: Tick
    wait_seconds: float
    force: bool = False

    def wanted(self, key: bytes | None) -> bool:
        """Whether a message of this key is the replay's (``--novel``), counting the rest."""
        if self.novel is None or key == self.novel.encode():
            return True
        self.summary.skipped_other_novels += 1
        return False

    async def switch(self) -> None:
        """Point the alias at the rebuilt collection."""
        assert self.target.collection is not None
        self.summary.previous_collection = await self.admin.point_alias(self.target.collection)
        log.info("alias now points at %s (was %s)", self.target, self.summary.previous_collection)


async def read_round(plan: Plan, reader: TopicReader, feed: Feed) -> None:
    """Read and feed up to the reader's snapshot of the log's end."""
    while True:
        messages = await reader.batches()
        if messages:
            await feed(messages)
            await reader.commit()
        plan.summary.read = reader.read
        plan.tick(reader.read, await reader.total())
        if not messages and await reader.backlog() == 0:
            return


def _names(chapters: list[Chapter]) -> list[str]:
    return [f"{novel}/{chapter}" for novel, chapter in chapters]


async def pump(
    plan: Plan,
    reader: TopicReader,
    feed: Feed,
    settle: Settle,
    missing: Missing | None = None,
    end_round: Settle | None = None,
) -> None:
    """Read until caught up; a full rebuild switches within the lag bound (or at the
    round bound) once nothing is missing (or ``plan.force``), then reads what was logged
    until the switch and settles it. Raises :class:`RebuildIncomplete` when it refuses.
    ``end_round`` runs after each round is read whole, before it settles."""

    async def round_() -> None:
        await read_round(plan, reader, feed)
        if end_round is not None:
            await end_round()

    await round_()
    if plan.target.live:
        return  # in place: done at the end of the log as it was
    settings, summary = plan.settings, plan.summary
    missing = missing or NothingMissing()
    retried: set[Chapter] = set()
    while True:
        await settle()
        summary.rounds += 1
        await reader.extend()  # the end of now, read once the round has settled
        lag = await reader.backlog()
        lacking = await missing.chapters()
        unretried = [c for c in lacking if c not in retried]
        decision = decide_cutover(
            lag,
            summary.rounds,
            settings.rebuild_switch_lag,
            settings.rebuild_max_rounds,
            missing=len(lacking),
            unretried=len(unretried),
            force=plan.force,
        )
        if isinstance(decision, Refuse):
            listed = ", ".join(_names(lacking)[:20])
            raise RebuildIncomplete(
                f"{decision.reason} (missing: {listed}; {plan.target} is kept unswitched: "
                "scribe index drop removes it)"
            )
        if isinstance(decision, RetryMissing):
            log.warning("%s: %s", decision.reason, ", ".join(_names(unretried)))
            await missing.retry(unretried)
            retried.update(unretried)
            summary.retried += _names(unretried)
        elif isinstance(decision, ReadAgain):
            log.info("catching up: %s", decision.reason)
        else:
            break
        await round_()
    summary.switch_lag = lag
    if lacking:
        summary.missing = _names(lacking)
        summary.notes.append(f"switched with --force, missing: {', '.join(summary.missing)}")
    if decision.late:
        log.warning("%s", decision.reason)
        plan.summary.notes.append(decision.reason)
    else:
        log.info("switching: %s", decision.reason)
    await plan.switch()
    await reader.extend()  # what was logged until the switch; live results go there now
    await round_()
    await settle()
