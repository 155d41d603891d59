"""One batch of the result agent: its view of the ledger and its queued index writes."""

from __future__ import annotations

from uuid import UUID

from agents.decisions import ChapterState, IndexResult, outlives_novel_deletion
from agents.ledger import Ledger
from agents.vector_store import VectorStore
from schemas import ChapterEmbedded, NovelRemoved, ScribeError


def needs_trim(current: ChapterState | None, count: int) -> bool:
    """Whether chunks numbered ``count`` and above may exist for the chapter.

    The ledger describes its index: a chapter it has never indexed (only submitted, or
    deleted) has no rows, one indexed with ``count`` chunks or fewer has none past them.
    Without a row (e.g. a rebuild's fresh scope) nothing is known, so trim.
    """
    if current is None:
        return True
    if current.indexed_version is None:
        return False
    return current.chunk_count > count


class BatchWrites:
    """Upserts of a batch, sent as one call; trims after them."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._chapters: dict[tuple[str, str], tuple[ChapterEmbedded, bool]] = {}
        #: Older versions a newer one replaced in the queue, newest last: written instead
        #: when Milvus rejects the newer one, whose ledger rows would otherwise say they are.
        self._replaced: dict[tuple[str, str], list[ChapterEmbedded]] = {}
        #: Results Milvus rejected as invalid, with the error: to be dead-lettered.
        self.rejected: list[tuple[ChapterEmbedded, ScribeError]] = []

    def add(self, result: ChapterEmbedded, trim: bool) -> None:
        """Queue the chapter's rows; a newer version in the batch replaces an older one."""
        key = (result.novel_id, result.chapter_id)
        earlier = self._chapters.get(key)
        if earlier is not None:
            self._replaced.setdefault(key, []).append(earlier[0])
        self._chapters[key] = (result, trim or (earlier is not None and earlier[1]))

    async def apply(self) -> None:
        """Upsert everything queued in one call, then trim; idempotent, so safe to retry.

        When Milvus rejects the batch as invalid, each chapter is written alone so the
        bad ones are found; those go to :attr:`rejected` (with the error), the rest lands.
        """
        if not self._chapters:
            return
        queued = list(self._chapters.values())
        try:
            await self._write(queued)
        except ScribeError as exc:
            if exc.retriable:
                raise
            rejected = []
            for item in queued:
                rejected += await self._write_alone(item)
            self.rejected += rejected
        self._chapters.clear()
        self._replaced.clear()

    async def _write_alone(
        self, item: tuple[ChapterEmbedded, bool]
    ) -> list[tuple[ChapterEmbedded, ScribeError]]:
        """Write one chapter; when Milvus rejects it, the versions it replaced in this
        batch, newest first, until one lands. Returns what was rejected."""
        result, trim = item
        older = self._replaced.get((result.novel_id, result.chapter_id), [])
        rejected = []
        for candidate, candidate_trim in [(result, trim), *((r, True) for r in reversed(older))]:
            try:
                await self._write([(candidate, candidate_trim)])
                break
            except ScribeError as one:
                if one.retriable:
                    raise
                rejected.append((candidate, one))
        return rejected

    async def _write(self, queued: list[tuple[ChapterEmbedded, bool]]) -> None:
        await self._store.upsert_chapters([result for result, _ in queued])
        trims = [(r.novel_id, r.chapter_id, len(r.chunks)) for r, trim in queued if trim]
        if trims:
            await self._store.trim_chapters(trims)


class BatchView:
    """The ledger as seen from inside a batch: effects applied but not yet recorded win.

    The batch's chapter rows are read in one query up front (:meth:`prefetch`), and each
    novel's tombstone once.
    """

    def __init__(self, ledger: Ledger, store: VectorStore) -> None:
        self._ledger = ledger
        self.writes = BatchWrites(store)
        self._chapters: dict[tuple[str, str], ChapterState | None] = {}
        self._novels: dict[str, int] = {}
        self._stored: dict[tuple[str, str], ChapterState | None] = {}
        self._tombstones: dict[str, int | None] = {}
        self._removals: set[str] = set()

    async def prefetch(self, keys: list[tuple[str, str]], removals: list[str]) -> None:
        """Read the ledger rows of ``keys`` (missing ones are known to be missing) and which
        of the deletion events ``removals`` were applied before."""
        found = await self._ledger.chapters_by_key(keys)
        self._stored = {key: found.get(key) for key in keys}
        self._removals = await self._ledger.removals_applied(removals) if removals else set()

    def removal_applied(self, event_id: UUID) -> bool:
        """Whether this deletion event was applied, before or earlier in this batch."""
        return str(event_id) in self._removals

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        key = (novel_id, chapter_id)
        if key in self._chapters:
            return self._chapters[key]
        if key in self._stored:
            stored = self._stored[key]
        else:
            stored = await self._ledger.chapter(novel_id, chapter_id)
        deleted_at = self._novels.get(novel_id)  # deleted earlier in this batch
        if deleted_at is not None and stored is not None:
            return stored if outlives_novel_deletion(stored, deleted_at) else None
        return stored

    async def novel_chapters(self, novel_id: str) -> list[ChapterState]:
        """The novel's chapter rows, as this batch left them so far."""
        rows = {
            (s.novel_id, s.chapter_id): s for s in await self._ledger.chapters_of_novel(novel_id)
        }
        if novel_id in self._novels:
            deleted_at = self._novels[novel_id]
            rows = {k: s for k, s in rows.items() if outlives_novel_deletion(s, deleted_at)}
        for key, state in self._chapters.items():
            if key[0] == novel_id:
                rows.pop(key, None)
                if state is not None:
                    rows[key] = state
        return list(rows.values())

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        if novel_id in self._novels:
            return self._novels[novel_id]
        if novel_id not in self._tombstones:
            self._tombstones[novel_id] = await self._ledger.novel_deleted_offset(novel_id)
        return self._tombstones[novel_id]

    def remember(self, result: IndexResult, state: ChapterState) -> None:
        if not isinstance(result, ChapterEmbedded):
            self._removals.add(str(result.event_id))
        if isinstance(result, NovelRemoved):
            offset = result.source.offset if result.source else -1
            self._novels[result.novel_id] = offset
            for key, kept in list(self._chapters.items()):
                if key[0] == result.novel_id and not (
                    kept is not None and outlives_novel_deletion(kept, offset)
                ):
                    self._chapters[key] = None
        else:
            self._chapters[(state.novel_id, state.chapter_id)] = state
