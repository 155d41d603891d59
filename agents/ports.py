"""The small Protocols the agents talk through (adapters live apart, beside their services)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agents.ledger import Ledger
from agents.vector_store import Hit, VectorStore
from schemas import ResultEvent, ScribeError, SourceRef, Target
from schemas.submissions import SubmittedRun


class FlowSubmitter(Protocol):
    """Submits one flow run of the processing deployment.

    Real: ``streams.adapters.prefect.submitter``.
    """

    async def submit(
        self,
        *,
        name: str,
        idempotency_key: str,
        tags: list[str],
        parameters: dict[str, Any],
    ) -> SubmittedRun:
        """Create the run (or return the existing one for the key)."""
        ...

    async def in_flight(self) -> int:
        """Runs of the deployment that are scheduled, pending or running right now."""
        ...


class ResultWriter(Protocol):
    """Writes a result event to the results topic, durably (real: Kafka)."""

    async def publish(self, result: ResultEvent) -> None:
        """Return after the broker acknowledged the write."""
        ...


class DeadLetters(Protocol):
    """Parks a message that can never be processed, with the reason (real: the DLQ topic)."""

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Write the original bytes and key with the source position and the error."""
        ...


@dataclass(frozen=True)
class Index:
    """One physical collection and the ledger scope that describes exactly it."""

    name: str
    store: VectorStore
    ledger: Ledger


class IndexCatalog(Protocol):
    """The indexes the one writer of a novel's results writes to (real: Milvus + ledger).

    Live results (``target`` unset) go to the collection the alias points at *now*, with
    that collection's ledger scope; a rebuild's results go to the rebuild's collection.
    """

    async def resolve(self, target: Target) -> Index | None:
        """The index for ``target``; ``None`` when that collection no longer exists."""
        ...

    async def close(self) -> None:
        """Release every store and ledger handed out."""
        ...


class ChunkSearch(Protocol):
    """Finds chunks of the live index, best first, by each retriever.

    Real: ``streams.adapters.milvus.search``; fake: ``tests.fakes.InMemoryVectorStore``.
    """

    async def has_sparse(self) -> bool | None:
        """Whether the live collection has the BM25 field (older ones are dense only);
        ``None`` while there is no index at all (nothing indexed yet)."""
        ...

    async def dense(self, vector: list[float], n: int, novel_id: str | None) -> list[Hit]:
        """The ``n`` chunks nearest to ``vector`` (cosine; higher is better)."""
        ...

    async def bm25(self, query: str, n: int, novel_id: str | None) -> list[Hit]:
        """The ``n`` chunks that match ``query``'s terms best (BM25 score, higher is better)."""
        ...
