"""The sink's commit order, as one named sequence (as quix-streams' checkpoint).

What one index's share of a batch commits, in the only order that loses nothing:

1. **write**: the batch's upserts and deletes reach Milvus (rows Milvus rejects as
   invalid are handed back, to be dead-lettered; the rest lands);
2. **flush**: Milvus makes them durable;
3. **record**: the ledger says what they did: chapter rows in one call per run of them,
   novel deletions where they stand, and last the removal marks;
4. **commit**: the worker commits the batch's offsets, once
   :meth:`agents.result_agent.ResultAgent.handle_batch` has returned.

Each step happens before the record that says it happened. A crash anywhere before step
4 redelivers the batch, and every step is idempotent (upserts, deletes, compare-and-set
ledger writes), so the replay redoes the same effects. The failpoints of
:mod:`schemas.failpoints` sit between the steps, where the chaos run crashes a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.decisions import ChapterState, IndexResult
from agents.ports import Index
from agents.sink_batch import BatchWrites
from schemas import ChapterEmbedded, NovelRemoved, ScribeError
from schemas.failpoints import failpoint


@dataclass(frozen=True)
class Checkpoint:
    """Steps 1-3 of the commit order for one index (see the module docstring); the
    index's store and ledger retry their own calls (``agents.retry.retried``)."""

    index: Index

    async def write(self, writes: BatchWrites) -> list[tuple[ChapterEmbedded, ScribeError]]:
        """Step 1: land the batch's writes; return those Milvus rejected, with the error."""
        await writes.apply()
        return list(writes.rejected)

    async def flush(self) -> None:
        """Step 2: make the writes durable."""
        failpoint("sink.after_write")
        await self.index.store.flush()
        failpoint("sink.after_flush")

    async def record(self, applied: list[tuple[IndexResult, ChapterState]]) -> None:
        """Step 3: record the effects in order: chapter rows in one call per run of them,
        novel deletions where they stand, and last the removal marks.

        A removal mark says "this deletion event applied, skip its copies"; it must not be
        written before the rows that say what the deletion did, or a crash between the two
        skips the redelivered deletion while the ledger still holds the chapter as indexed
        (and a late result of the deleted version then applies). Written last, a crash
        before it redelivers the batch, whose replay in order redoes the same effects.
        """
        ledger = self.index.ledger
        rows: list[ChapterState] = []
        for result, state in [*applied, (None, None)]:
            if rows and (result is None or isinstance(result, NovelRemoved)):
                await ledger.record_applied_many(list(rows))
                rows.clear()
                failpoint("sink.between_ledger_writes")
            if isinstance(result, NovelRemoved):
                offset = result.source.offset if result.source else -1
                await ledger.delete_novel(result.novel_id, offset)
                failpoint("sink.between_ledger_writes")
            elif state is not None:
                rows.append(state)
        removals = [str(r.event_id) for r, _ in applied if not isinstance(r, ChapterEmbedded)]
        if removals:
            await ledger.record_removals(removals)
