"""What a full re-embed lacks before its switch, and running it once more (issue 19).

A chapter whose newest run in the rebuild failed for good (after the flow's own retries)
is parked in the DLQ with its target (``prefect_bridge.failure_report``). It is read from
Prefect's run states, which are set before the failure hook reports them on the results
topic (the ledger would learn it only after the round settled). When the live index holds
that chapter, switching would make it vanish from search: it is *missing*. The rebuild
runs each missing chapter once more (its newest write, under a new idempotency key) and
refuses to switch while any stays missing, unless forced (``streams.commands.cutover``).
"""

from __future__ import annotations

import logging
from typing import Any

from agents.ledger import Ledger
from schemas.submissions import SubmittedRun
from streams.adapters.prefect.submitter import PrefectFlowSubmitter
from streams.commands.replay_rounds import Chapter

log = logging.getLogger("scribe.replay")


class RebuildRuns:
    """A re-embed's flow submitter that remembers each chapter's newest submission."""

    def __init__(self, submitter: PrefectFlowSubmitter, tag: str) -> None:
        self._submitter = submitter
        self._tag = tag
        #: chapter -> (its newest submission, the run's id)
        self._newest: dict[Chapter, tuple[dict[str, Any], str]] = {}
        self.retries = 0

    async def submit(
        self, *, name: str, idempotency_key: str, tags: list[str], parameters: dict[str, Any]
    ) -> SubmittedRun:
        """Submit and remember (the chapter agent submits a novel's writes in log order)."""
        run = {"name": name, "idempotency_key": idempotency_key, "tags": tags}
        submitted = await self._submitter.submit(
            name=name, idempotency_key=idempotency_key, tags=tags, parameters=parameters
        )
        chapter = (str(parameters["novel_id"]), str(parameters["chapter_id"]))
        self._newest[chapter] = ({**run, "parameters": parameters}, submitted.id)
        return submitted

    async def in_flight(self, tag: str | None = None) -> int:
        """Runs in flight (see ``PrefectFlowSubmitter.in_flight``)."""
        return await self._submitter.in_flight(tag)

    async def failed(self) -> list[Chapter]:
        """Chapters whose newest run of this rebuild ended Failed."""
        failed = await self._submitter.failed(self._tag)
        return [chapter for chapter, (_, run) in self._newest.items() if run in failed]

    async def run_again(self, chapter: Chapter) -> bool:
        """Submit the chapter's newest write once more; False when this rebuild never
        submitted it."""
        if chapter not in self._newest:
            return False
        newest, _ = self._newest[chapter]
        self.retries += 1
        await self.submit(
            name=newest["name"],
            idempotency_key=f"{newest['idempotency_key']}:again{self.retries}",
            tags=newest["tags"],
            parameters=newest["parameters"],
        )
        return True


class MissingChapters:
    """Chapters whose newest run failed in the rebuild while the live index holds them."""

    def __init__(self, runs: RebuildRuns, live: Ledger) -> None:
        self._runs, self._live = runs, live

    async def chapters(self) -> list[Chapter]:
        """See :class:`streams.commands.replay_rounds.Missing`."""
        failed = await self._runs.failed()
        held = await self._live.chapters_by_key(failed) if failed else {}
        return [
            key
            for key in failed
            if (row := held.get(key)) is not None
            and row.indexed_version is not None
            and not row.deleted
        ]

    async def retry(self, chapters: list[Chapter]) -> None:
        """See :class:`streams.commands.replay_rounds.Missing`."""
        for chapter in chapters:
            if not await self._runs.run_again(chapter):
                log.warning("%s/%s was not submitted by this rebuild: not retried", *chapter)
