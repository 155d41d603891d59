"""Reuse of embeddings by content (pure, plus the port it reads from).

A chunk whose exact text the same model embedded before gets that vector again instead
of running the model. The vector index is the store: it is bounded by what it indexes,
survives restarts, and its rows carry ``text``, ``model`` and ``embedding``. Reuse needs
the same model name and the same text, nothing else: the vector is the model's vector
for that text whatever chunker cut it, so it is safe across chunker versions. A replay
under a new model (``scribe replay --reembed``) finds no row of that model and embeds
everything; under the same model after a chunker change it reuses every chunk whose
text did not change. Vectors are float32 everywhere (results topic, Milvus), so a
reused vector is exactly the one the index already holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prefect_bridge.embedding import Vector
from schemas import LIVE, Target


class VectorLookup(Protocol):
    """Vectors the index already holds for a chapter's chunk texts."""

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        """Map each of ``texts`` that a row of this chapter made by ``model`` holds to
        that row's vector; never a vector of another text or another model.

        ``target``: the collection a rebuild writes, looked up as well as the live one.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True)
class ReusePlan:
    """Which chunks keep a known vector and which must be embedded."""

    reused: dict[int, Vector]
    to_embed: list[int]

    def vectors(self, embedded: Sequence[Vector]) -> list[Vector]:
        """All vectors in chunk order, given those of ``to_embed`` in that order."""
        if len(embedded) != len(self.to_embed):
            raise ValueError(f"{len(embedded)} vectors for {len(self.to_embed)} chunks")
        fresh = dict(zip(self.to_embed, embedded, strict=True))
        return [
            self.reused[i] if i in self.reused else fresh[i]
            for i in range(len(self.reused) + len(fresh))
        ]


def plan_reuse(texts: Sequence[str], known: Mapping[str, Vector]) -> ReusePlan:
    """Reuse the vector of every chunk whose exact text is ``known``; embed the rest."""
    reused = {i: known[t] for i, t in enumerate(texts) if t in known}
    return ReusePlan(reused, [i for i in range(len(texts)) if i not in reused])
