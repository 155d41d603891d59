"""Contract every VectorLookup adapter (the flow's port for reusing vectors) must meet:
run against the fake and Milvus.

Each ``check_*`` coroutine takes a fresh, empty vector store and a lookup that reads
what that store wrote (after :meth:`VectorStore.flush`, as the flow reads what the sink
wrote). ``tests/unit/test_vector_store_contract.py`` runs them on the in-memory pair,
``tests/integration/test_vector_store_milvus.py`` on Milvus Lite.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Sequence

from agents.vector_store import VectorStore
from prefect_bridge.vector_reuse import VectorLookup
from tests.vector_store_contract import MODEL, chapter


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


async def check_a_chapters_known_texts_come_back_with_their_vectors(
    store: VectorStore, lookup: VectorLookup
) -> None:
    novel = f"n-{uuid.uuid4().hex[:8]}"
    written = chapter(novel, "c1", 1, 3)
    await store.upsert_chapters([written])
    await store.flush()
    texts = [c.text for c in written.chunks]
    got = await lookup.known_vectors(novel, "c1", MODEL, [*texts, "never written"])
    assert set(got) == set(texts)
    assert all(_close(got[c.text], c.vector) for c in written.chunks)


async def check_another_chapter_or_model_never_answers(
    store: VectorStore, lookup: VectorLookup
) -> None:
    novel = f"n-{uuid.uuid4().hex[:8]}"
    other = chapter(novel, "c2", 1, 2, axis=3)
    await store.upsert_chapters([other])
    await store.flush()
    texts = [c.text for c in other.chunks]
    assert await lookup.known_vectors(novel, "c1", MODEL, texts) == {}  # not c1's rows
    assert await lookup.known_vectors(novel, "c2", "another-model", texts) == {}
    assert await lookup.known_vectors(f"{novel}-x", "c2", MODEL, texts) == {}


async def check_a_deleted_chapter_is_known_no_more(
    store: VectorStore, lookup: VectorLookup
) -> None:
    novel = f"n-{uuid.uuid4().hex[:8]}"
    written = chapter(novel, "c1", 1, 2)
    await store.upsert_chapters([written])
    await store.flush()
    await store.delete_chapter(novel, "c1")
    await store.flush()
    assert await lookup.known_vectors(novel, "c1", MODEL, [c.text for c in written.chunks]) == {}


CONTRACT: list[Callable[[VectorStore, VectorLookup], Awaitable[None]]] = [
    check_a_chapters_known_texts_come_back_with_their_vectors,
    check_another_chapter_or_model_never_answers,
    check_a_deleted_chapter_is_known_no_more,
]
