"""Waiting until chapters are searchable: polling Milvus for each chapter's row count."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bench.workload import BenchChapter, Clock

#: Milvus' largest ``offset + limit`` of a query.
QUERY_LIMIT = 16384


class VersionTarget(Protocol):
    """A chapter version the index should come to hold (an edit)."""

    @property
    def ref(self) -> str: ...
    @property
    def novel_id(self) -> str: ...
    @property
    def chapter_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def expected_chunks(self) -> int: ...


class BenchTimeout(RuntimeError):
    """A pipeline did not finish in time."""


def milvus_client(uri: str, attempts: int = 5) -> Any:
    """A pymilvus client on a channel of its own (``dedicated``), retried while refused.

    pymilvus 3 shares one gRPC channel per URI in a process by default; a shared channel
    that Milvus Lite closed while idle ("too many pings") could fail the next client. The
    bench's own clients keep out of that; the stores under test use pymilvus' default.
    """
    from pymilvus import MilvusClient

    for attempt in range(1, attempts + 1):
        try:
            return MilvusClient(uri=uri, dedicated=True)
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


class IndexWatcher:
    """Counts rows per chapter of a novel behind one alias (own pymilvus client)."""

    def __init__(self, uri: str, alias: str) -> None:
        self._uri = uri
        self._alias = alias
        self._client: Any = None
        self._exists = False

    def _connect(self) -> Any:
        if self._client is None:
            self._client = milvus_client(self._uri)
        return self._client

    def counts(self, novel_id: str) -> Counter[str]:
        """Rows per chapter id of ``novel_id``; empty while the alias does not exist yet."""
        try:
            client = self._connect()
            if not self._exists:  # no query before the worker made the alias (error logs)
                self._exists = self._alias in set(client.list_aliases().get("aliases", []))
                if not self._exists:
                    return Counter()
            rows = client.query(
                self._alias,
                filter=f'novel_id == "{novel_id}"',
                output_fields=["chapter_id"],
                limit=QUERY_LIMIT,
            )
        except Exception:  # alias not created yet, or a transient error: nothing counted
            self.close()
            return Counter()
        return Counter(str(r["chapter_id"]) for r in rows)

    async def wait(
        self,
        chapters: Sequence[BenchChapter],
        clock: Clock,
        timeout_s: float,
        alive: Callable[[], None],
        interval: float = 0.2,
    ) -> None:
        """Poll until every chapter holds exactly its expected rows; mark each when seen.

        ``alive`` is called every round and should raise when a process under test died.
        """
        pending = {c.ref: c for c in chapters if c.ref not in clock.done}
        deadline = time.monotonic() + timeout_s
        while pending:
            alive()
            for novel in sorted({c.novel_id for c in pending.values()}):
                counts = await asyncio.to_thread(self.counts, novel)
                for ref, ch in list(pending.items()):
                    if ch.novel_id == novel and counts.get(ch.chapter_id) == ch.expected_chunks:
                        clock.mark_done(ref)
                        del pending[ref]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise BenchTimeout(
                    f"{len(pending)} chapters not searchable after {timeout_s:.0f}s: "
                    f"{sorted(pending)[:5]}"
                )
            await asyncio.sleep(interval)

    def versions(self, novel_id: str) -> dict[str, Counter[int]]:
        """Per chapter id of ``novel_id``: rows per ``chapter_version`` (empty as above)."""
        try:
            client = self._connect()
            if not self._exists:
                self._exists = self._alias in set(client.list_aliases().get("aliases", []))
                if not self._exists:
                    return {}
            rows = client.query(
                self._alias,
                filter=f'novel_id == "{novel_id}"',
                output_fields=["chapter_id", "chapter_version"],
                limit=QUERY_LIMIT,
            )
        except Exception:
            self.close()
            return {}
        out: dict[str, Counter[int]] = {}
        for r in rows:
            out.setdefault(str(r["chapter_id"]), Counter())[int(r["chapter_version"])] += 1
        return out

    async def wait_versions(
        self,
        targets: Sequence[VersionTarget],
        clock: Clock,
        timeout_s: float,
        alive: Callable[[], None],
        interval: float = 0.1,
    ) -> None:
        """Poll until each target's chapter holds exactly its version's rows and no other
        (an edit is searchable when the index shows that version, trimmed); mark each."""
        pending = {t.ref: t for t in targets if t.ref not in clock.done}
        deadline = time.monotonic() + timeout_s
        while pending:
            alive()
            for novel in sorted({t.novel_id for t in pending.values()}):
                seen = await asyncio.to_thread(self.versions, novel)
                for ref, t in list(pending.items()):
                    if t.novel_id == novel and seen.get(t.chapter_id) == Counter(
                        {t.version: t.expected_chunks}
                    ):
                        clock.mark_done(ref)
                        del pending[ref]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise BenchTimeout(
                    f"{len(pending)} edits not searchable after {timeout_s:.0f}s: "
                    f"{sorted(pending)[:5]}"
                )
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the client."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken channel
                client.close()
