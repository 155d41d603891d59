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

from agents.decisions import run_name
from agents.ledger import Ledger
from schemas.submissions import SubmittedRun
from streams.adapters.prefect.submitter import PrefectFlowSubmitter
from streams.commands.replay_rounds import Chapter

log = logging.getLogger("scribe.replay")


class RebuildRuns:
    """A re-embed's flow submitter that remembers each chapter's newest submission.

    A batch run (``agents.batches``) is remembered per chapter: a chapter of it is run once
    more on its own, and its failure is read from the rebuild's books (a batch run does not
    fail for one chapter: it reports that chapter as failed and goes on).
    """

    def __init__(self, submitter: PrefectFlowSubmitter, tag: str) -> None:
        self._submitter = submitter
        self._tag = tag
        #: chapter -> (its newest submission as a run of its own, the run's id, batched?)
        self._newest: dict[Chapter, tuple[dict[str, Any], str, bool]] = {}
        self.retries = 0

    async def submit(
        self, *, name: str, idempotency_key: str, tags: list[str], parameters: dict[str, Any]
    ) -> SubmittedRun:
        """Submit and remember (the chapter agent submits a novel's writes in log order)."""
        submitted = await self._submitter.submit(
            name=name, idempotency_key=idempotency_key, tags=tags, parameters=parameters
        )
        batch = parameters.get("batch")
        if batch is None:
            run = {"name": name, "idempotency_key": idempotency_key, "tags": tags}
            chapter = (str(parameters["novel_id"]), str(parameters["chapter_id"]))
            self._newest[chapter] = ({**run, "parameters": parameters}, submitted.id, False)
            return submitted
        for entry in batch:
            novel, chapter_id = str(entry["novel_id"]), str(entry["chapter_id"])
            own = {
                "name": run_name(novel, chapter_id, int(entry["version"])),
                "idempotency_key": f"{idempotency_key}:{novel}/{chapter_id}",
                "tags": [f"novel:{novel}", f"chapter:{chapter_id}", self._tag],
                "parameters": entry,
            }
            self._newest[(novel, chapter_id)] = (own, submitted.id, True)
        return submitted

    async def in_flight(self, tag: str | None = None) -> int:
        """Runs in flight (see ``PrefectFlowSubmitter.in_flight``)."""
        return await self._submitter.in_flight(tag)

    async def failed(self, books: Ledger) -> list[Chapter]:
        """Chapters whose newest submission in this rebuild failed for good: its own run
        ended Failed, or its batch run reported it failed in the rebuild's ``books``."""
        failed = await self._submitter.failed(self._tag)
        newest = self._newest.items()
        alone = [c for c, (_, run, batched) in newest if not batched and run in failed]
        batched = [c for c, (_, _, in_batch) in self._newest.items() if in_batch]
        rows = await books.chapters_by_key(batched) if batched else {}
        reported = [
            c
            for c in batched
            if (row := rows.get(c)) is not None
            and row.status == "failed"
            and (row.failed_version or 0) >= int(self._newest[c][0]["parameters"]["version"])
        ]
        return alone + reported

    async def run_again(self, chapter: Chapter) -> bool:
        """Submit the chapter's newest write once more, in a run of its own; False when
        this rebuild never submitted it."""
        if chapter not in self._newest:
            return False
        newest, _, _ = self._newest[chapter]
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

    def __init__(self, runs: RebuildRuns, live: Ledger, books: Ledger) -> None:
        self._runs, self._live, self._books = runs, live, books

    async def chapters(self) -> list[Chapter]:
        """See :class:`streams.commands.replay_rounds.Missing`."""
        failed = await self._runs.failed(self._books)
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
