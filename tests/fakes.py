"""In-memory stand-ins for the ports, shared by the unit tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from agents.decisions import ChapterState, outlives_novel_deletion
from agents.ledger import LedgerSummary, applies_over
from agents.ports import Index
from agents.vector_store import Hit, Trim, chunk_rows
from prefect_bridge.publisher import encode_result
from schemas import (
    LIVE,
    ChapterEmbedded,
    ChapterProcessingFailed,
    EventUnavailable,
    ResultEvent,
    ResultTooLarge,
    ScribeError,
    SourceRef,
    Target,
    VectorStoreError,
    VectorStoreRejected,
)
from schemas.dead_letters import Headers, error_headers
from schemas.submissions import SubmittedRun
from streams.adapters.ledger import sql as q

#: The fake publisher's size limit: SCRIBE_MAX_RESULT_BYTES' default.
DEFAULT_MAX_RESULT_BYTES = 64 * 1024 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


class InMemorySubmitter:
    """Fake FlowSubmitter: records each submission and raises the queued ``failures``
    first; one run per idempotency key, as Prefect; ``in_flight`` gives the successive
    answers of ``running`` (the last repeats), or with ``running=None`` the runs made so
    far (none of them ever ends: nothing executes them)."""

    def __init__(
        self, failures: Sequence[Exception] = (), running: int | Sequence[int] | None = 0
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = list(failures)
        self.answers: list[int] | None = (
            None if running is None else [running] if isinstance(running, int) else list(running)
        )
        self.counted = 0
        self.runs: dict[str, SubmittedRun] = {}
        #: The call that made each run, by run id.
        self.made: dict[str, dict[str, Any]] = {}

    @property
    def keys(self) -> list[str]:
        """The idempotency keys submitted, in order."""
        return [c["idempotency_key"] for c in self.calls]

    async def in_flight(self) -> int:
        self.counted += 1
        if self.answers is None:
            return len(self.runs)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def submit(
        self, *, name: str, idempotency_key: str, tags: list[str], parameters: dict[str, Any]
    ) -> SubmittedRun:
        self.calls.append(
            {
                "name": name,
                "idempotency_key": idempotency_key,
                "tags": tags,
                "parameters": parameters,
            }
        )
        if self.failures:
            raise self.failures.pop(0)
        # As Prefect: the same idempotency key returns the run it created first.
        if idempotency_key not in self.runs:
            run = SubmittedRun(id=f"run-{len(self.runs) + 1}")
            self.runs[idempotency_key] = run
            self.made[run.id] = self.calls[-1]
        return self.runs[idempotency_key]


class DeadLettered(NamedTuple):
    """One letter the fake DLQ keeps."""

    key: bytes | None
    value: bytes | None
    source: SourceRef
    error: ScribeError
    redrive: int = 0


class InMemoryDeadLetters:
    """Fake DeadLetters: keeps each letter (headers built as the real writer builds them)
    and raises the queued ``failures`` first; ``attempts`` counts the calls."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.items: list[DeadLettered] = []
        self.attempts = 0
        self.failures = list(failures)

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        error_headers(source, error, redrive)  # what the real DLQ writer does with them
        self.items.append(DeadLettered(key, value, source, error, redrive))


class InMemoryPublisher:
    """Fake ResultPublisher: keeps what was published; refuses a result over ``max_bytes``
    encoded, as the Kafka adapter does."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.published: list[ResultEvent] = []
        self.dead_letters: list[tuple[bytes | None, bytes, Headers]] = []
        self.failures: list[ChapterProcessingFailed] = []
        self.closed = False

    async def publish(self, result: ResultEvent) -> None:
        """Record the result."""
        _, value = encode_result(result)
        if len(value) > self.max_bytes:
            raise ResultTooLarge(f"{result.event_type} is {len(value)} bytes")
        self.published.append(result)

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Record the dead letter."""
        self.dead_letters.append((key, value, headers))

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        """Record the notification."""
        self.failures.append(failure)

    async def close(self) -> None:
        """Nothing to release; remember that it was asked."""
        self.closed = True


class InMemoryLedger:
    """Fake ledger for unit tests, with the same semantics as the SQL ledgers."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ChapterState] = {}
        self.novels: dict[str, int] = {}
        self.removals: set[str] = set()

    async def chapter(self, novel_id: str, chapter_id: str) -> ChapterState | None:
        """Row lookup."""
        return self.rows.get((novel_id, chapter_id))

    async def chapters_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ChapterState]:
        """Row lookups."""
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def novel_deleted_offset(self, novel_id: str) -> int | None:
        """Tombstone lookup."""
        return self.novels.get(novel_id)

    async def record_applied(self, state: ChapterState) -> None:
        """Upsert like ``ledger_sql.RECORD_APPLIED`` (compare-and-set on the version)."""
        old = self.rows.get((state.novel_id, state.chapter_id))
        if old is not None and not applies_over(state, old):
            return
        keep_failure = old is not None and (old.failed_version or 0) > state.version
        self.rows[(state.novel_id, state.chapter_id)] = replace(
            state,
            flow_run_id=state.flow_run_id or (old.flow_run_id if old else None),
            latest_version=max(old.latest_version if old else state.version, state.version),
            failed_version=old.failed_version if keep_failure and old else None,
            error=old.error if keep_failure and old else None,
            updated_at=state.updated_at or _now(),
        )

    async def record_applied_many(self, states: Sequence[ChapterState]) -> None:
        """Each in order."""
        for state in states:
            await self.record_applied(state)

    async def record_submitted(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str
    ) -> None:
        """Upsert like ``ledger_sql.RECORD_SUBMITTED``."""
        old = self.rows.get((novel_id, chapter_id)) or ChapterState(novel_id, chapter_id, 0, False)
        self.rows[(novel_id, chapter_id)] = replace(
            old,
            flow_run_id=flow_run_id if version >= old.latest_version else old.flow_run_id,
            latest_version=max(old.latest_version, version),
            updated_at=_now(),
        )

    async def record_failed(
        self, novel_id: str, chapter_id: str, version: int, flow_run_id: str | None, error: str
    ) -> None:
        """Upsert like ``ledger_sql.RECORD_FAILED``."""
        old = self.rows.get((novel_id, chapter_id)) or ChapterState(novel_id, chapter_id, 0, False)
        self.rows[(novel_id, chapter_id)] = replace(
            old,
            failed_version=max(old.failed_version or 0, version),
            error=error,
            flow_run_id=flow_run_id,
            latest_version=max(old.latest_version, version),
            updated_at=_now(),
        )

    async def chapters_of_novel(self, novel_id: str) -> list[ChapterState]:
        """The novel's rows."""
        return [state for (novel, _), state in self.rows.items() if novel == novel_id]

    async def delete_novel(self, novel_id: str, offset: int) -> None:
        """Drop rows logged before ``offset``, keep the highest tombstone."""
        for key, state in list(self.rows.items()):
            if key[0] == novel_id and not outlives_novel_deletion(state, offset):
                del self.rows[key]
        self.novels[novel_id] = max(offset, self.novels.get(novel_id, offset))

    async def drop_scope(self) -> None:
        """Forget everything."""
        self.rows.clear()
        self.novels.clear()
        self.removals.clear()

    async def removals_applied(self, event_ids: Sequence[str]) -> set[str]:
        """Set lookup."""
        return self.removals & set(event_ids)

    async def record_removals(self, event_ids: Sequence[str]) -> None:
        """Set insert."""
        self.removals |= set(event_ids)

    async def counts(self) -> dict[str, int]:
        """Counts by status."""
        counts = dict(q.EMPTY_COUNTS)
        for state in self.rows.values():
            counts[state.status] += 1
        return counts

    async def chapters(self, status: str, limit: int = 50) -> list[ChapterState]:
        """Rows in ``status``, newest first."""
        rows = [s for s in self.rows.values() if s.status == status]
        rows.sort(key=lambda s: s.updated_at or _now(), reverse=True)
        return rows[:limit]

    async def summary(self, pending_before: datetime) -> LedgerSummary:
        """Sums and the oldest pending row."""
        pending = sorted(
            (s for s in self.rows.values() if s.status == "pending"),
            key=lambda s: s.updated_at or _now(),
        )
        return LedgerSummary(
            indexed_rows=sum(s.chunk_count for s in self.rows.values() if not s.deleted),
            stale_pending=sum(1 for s in pending if (s.updated_at or _now()) < pending_before),
            oldest_pending=pending[0] if pending else None,
        )

    async def close(self) -> None:
        """Nothing to release."""


def _hit(row: dict[str, Any], score: float) -> Hit:
    """A row of the fake index as a search hit."""
    explain = ("source_topic", "source_partition", "source_offset", "flow_run_id", "reused")
    return Hit(
        id=row["id"],
        score=score,
        novel_id=row["novel_id"],
        chapter_id=row["chapter_id"],
        chapter_version=row["chapter_version"],
        chunk_no=row["chunk_no"],
        text=row["text"],
        **{name: row.get(name) for name in explain},
    )


class InMemoryVectorStore:
    """Fake store for unit tests: a dict of rows, brute-force cosine search."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.flushes = 0
        self.upserts = 0
        self.trims = 0
        self.trim_calls = 0

    async def upsert_chapters(self, results: list[ChapterEmbedded]) -> None:
        """Upsert only."""
        self.upserts += 1
        for result in results:
            for row in chunk_rows(result):
                self.rows[row["id"]] = row

    async def trim_chapters(self, trims: Sequence[Trim]) -> None:
        """Drop chunks at or past each ``keep``; ``trims`` counts chapters, ``trim_calls`` calls."""
        self.trim_calls += 1
        for novel_id, chapter_id, keep in trims:
            self.trims += 1
            for key in [
                k
                for k, r in self.rows.items()
                if (r["novel_id"], r["chapter_id"]) == (novel_id, chapter_id)
                and r["chunk_no"] >= keep
            ]:
                del self.rows[key]

    async def delete_chapter(self, novel_id: str, chapter_id: str) -> None:
        """Drop the chapter's rows."""
        for key in [
            k
            for k, r in self.rows.items()
            if (r["novel_id"], r["chapter_id"]) == (novel_id, chapter_id)
        ]:
            del self.rows[key]

    async def delete_novel(self, novel_id: str, keep: Sequence[str] = ()) -> None:
        """Drop the novel's rows but those of the chapters in ``keep``."""
        for key in [
            k
            for k, r in self.rows.items()
            if r["novel_id"] == novel_id and r["chapter_id"] not in keep
        ]:
            del self.rows[key]

    async def flush(self) -> None:
        """Count flushes."""
        self.flushes += 1

    async def search(self, vector: list[float], k: int, novel_id: str | None = None) -> list[Hit]:
        """Dot product of normalised vectors."""
        scored = [
            (sum(a * b for a, b in zip(vector, r["embedding"], strict=True)), r)
            for r in self.rows.values()
            if novel_id is None or r["novel_id"] == novel_id
        ]
        scored.sort(key=lambda p: -p[0])
        return [_hit(r, s) for s, r in scored[:k]]

    #: Whether the fake index has the BM25 field (``False``: an older collection).
    sparse = True

    async def has_sparse(self) -> bool | None:
        """:class:`agents.ports.ChunkSearch`: as set."""
        return self.sparse

    async def dense(self, vector: list[float], n: int, novel_id: str | None) -> list[Hit]:
        """:class:`agents.ports.ChunkSearch`: :meth:`search`."""
        return await self.search(vector, n, novel_id)

    async def bm25(self, query: str, n: int, novel_id: str | None) -> list[Hit]:
        """:class:`agents.ports.ChunkSearch`: occurrences of the query's character pairs
        (a stand-in for BM25 over jieba words); rows matching nothing are not returned."""
        if not self.sparse:
            raise VectorStoreRejected("this collection has no sparse field")
        pairs = {query[i : i + 2] for i in range(len(query) - 1)} - {""}
        scored = [
            (float(sum(r["text"].count(p) for p in pairs)), r)
            for r in self.rows.values()
            if novel_id is None or r["novel_id"] == novel_id
        ]
        scored = sorted((p for p in scored if p[0] > 0), key=lambda p: -p[0])
        return [_hit(r, s) for s, r in scored[:n]]

    async def count(self, novel_id: str | None = None) -> int:
        """Rows (of one novel)."""
        return sum(1 for r in self.rows.values() if novel_id is None or r["novel_id"] == novel_id)


class InMemoryEventLog:
    """Fake EventSource: an input topic in lists, one per partition (partition 0 unless
    said), with retention's trimming."""

    def __init__(self, topic: str = "novel-events") -> None:
        self.topic = topic
        self.partitions: dict[int, list[tuple[bytes | None, bytes]]] = {0: []}
        self.starts: dict[int, int] = {}  # first offset still held, per trimmed partition

    @property
    def messages(self) -> list[tuple[bytes | None, bytes]]:
        """Partition 0's messages."""
        return self.partitions[0]

    def append(self, key: bytes | None, value: bytes, partition: int = 0) -> SourceRef:
        """Log a message; return its position."""
        log = self.partitions.setdefault(partition, [])
        log.append((key, value))
        return SourceRef(topic=self.topic, partition=partition, offset=len(log) - 1)

    def trim(self, partition: int, before: int) -> None:
        """Forget the partition's messages below ``before``, as retention does."""
        self.starts[partition] = max(before, self.starts.get(partition, 0))

    def flow_params(self, event: dict[str, Any]) -> dict[str, Any]:
        """Log ``event`` as JSON and return the flow-run parameters the chapter agent makes."""
        source = self.append(str(event["novel_id"]).encode(), json.dumps(event).encode())
        return {
            "source": source.model_dump(mode="json", exclude_none=True),
            "event_id": str(event["event_id"]),
            "novel_id": event["novel_id"],
            "chapter_id": event["chapter_id"],
            "version": event["version"],
        }

    async def read(self, source: SourceRef) -> tuple[bytes | None, bytes]:
        """The message stored at ``source`` (its ``stored_at``); EventUnavailable for what
        the log does not (or no longer) hold."""
        log = self.partitions.get(source.partition, [])
        at = source.stored_at
        if source.topic != self.topic or not self.starts.get(source.partition, 0) <= at < len(log):
            raise EventUnavailable(f"{source} is not in the log")
        return log[at]

    async def close(self) -> None:
        """Nothing to release."""


class InMemoryVectorLookup:
    """Fake VectorLookup over an :class:`InMemoryVectorStore`'s rows (the flow's view of
    what the sink wrote); ``target`` is not told apart (one store)."""

    def __init__(self, store: InMemoryVectorStore) -> None:
        self.store = store

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, list[float]]:
        """The rows of this chapter and model whose text is one of ``texts``."""
        wanted = set(texts)
        return {
            r["text"]: list(r["embedding"])
            for r in self.store.rows.values()
            if (r["novel_id"], r["chapter_id"], r["model"]) == (novel_id, chapter_id, model)
            and r["text"] in wanted
        }

    def close(self) -> None:
        """Nothing to release."""


class InMemoryCatalog:
    """Fake IndexCatalog: physical collections by name, each an in-memory store and its
    own books; ``alias`` is the one live results go to (switch it as a rebuild does)."""

    def __init__(self, *names: str) -> None:
        self.indexes: dict[str, Index] = {}
        for name in names:
            self.create(name)
        self.alias: str | None = names[0] if names else None

    def create(self, name: str) -> None:
        """A new, empty collection with its own books."""
        self.indexes[name] = Index(name, InMemoryVectorStore(), InMemoryLedger())

    async def resolve(self, target: Target) -> Index | None:
        """The alias's index (a retriable error while there is none), or ``target``'s."""
        if target.collection is None:
            if self.alias is None:
                raise VectorStoreError("the index alias does not exist (yet)")
            return self.indexes[self.alias]
        return self.indexes.get(target.collection)

    async def close(self) -> None:
        """Nothing to release."""

    def store(self, name: str) -> InMemoryVectorStore:
        """The store of collection ``name``."""
        store = self.indexes[name].store
        assert isinstance(store, InMemoryVectorStore)
        return store
