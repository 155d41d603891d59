"""Contract every IndexCatalog adapter must meet: run against the fake and Milvus.

Each ``check_*`` coroutine takes a fresh :class:`Catalogued`: the catalog under test and
the operator's handles on what it catalogues (create a physical collection, point the
alias at one, drop one), as ``scribe replay`` and ``scribe index`` use them.
``tests/unit/test_index_catalog_contract.py`` runs them on the in-memory catalog,
``tests/integration/test_vector_store_milvus.py`` on Milvus Lite with SQLite books.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from agents.decisions import ChapterState
from agents.ports import IndexCatalog
from schemas import LIVE, ScribeError, Target


class Catalogued(Protocol):
    """The catalog under test and the operator's handles on its collections."""

    catalog: IndexCatalog

    async def create(self, name: str) -> None:
        """Create a physical collection."""
        ...

    async def point(self, name: str) -> None:
        """Point the alias at a physical collection."""
        ...

    async def drop(self, name: str) -> None:
        """Drop a physical collection."""
        ...


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"contract_{tag}__a", f"contract_{tag}__b"


async def check_live_results_follow_the_alias(c: Catalogued) -> None:
    a, b = _names()
    await c.create(a)
    await c.create(b)
    await c.point(a)
    assert (live := await c.catalog.resolve(LIVE)) is not None and live.name == a
    await c.point(b)  # a full rebuild switched: the next live result goes to b
    assert (live := await c.catalog.resolve(LIVE)) is not None and live.name == b


async def check_a_rebuilds_collection_resolves_by_name_until_dropped(c: Catalogued) -> None:
    a, b = _names()
    await c.create(a)
    await c.point(a)
    await c.create(b)
    assert (rebuild := await c.catalog.resolve(Target(b))) is not None and rebuild.name == b
    await c.drop(b)
    assert await c.catalog.resolve(Target(b)) is None  # its results in flight are skipped
    assert await c.catalog.resolve(Target(f"{b}_never_made")) is None


async def check_each_collection_keeps_its_own_books(c: Catalogued) -> None:
    a, b = _names()
    await c.create(a)
    await c.create(b)
    await c.point(a)
    live, by_name, other = (
        await c.catalog.resolve(LIVE),
        await c.catalog.resolve(Target(a)),
        await c.catalog.resolve(Target(b)),
    )
    assert live is not None and by_name is not None and other is not None
    await live.ledger.record_applied(ChapterState("n", "c1", 2, False, indexed_version=2))
    row = await by_name.ledger.chapter("n", "c1")  # the same collection: the same books
    assert row is not None and row.version == 2
    assert await other.ledger.chapter("n", "c1") is None  # another collection: not its


async def check_without_an_alias_live_results_wait(c: Catalogued) -> None:
    """Before the worker made the alias, a live result cannot be placed: a retriable
    error (the sink retries), never a guess."""
    with pytest.raises(ScribeError) as raised:
        await c.catalog.resolve(LIVE)
    assert raised.value.retriable


CONTRACT: list[Callable[[Catalogued], Awaitable[None]]] = [
    check_live_results_follow_the_alias,
    check_a_rebuilds_collection_resolves_by_name_until_dropped,
    check_each_collection_keeps_its_own_books,
    check_without_an_alias_live_results_wait,
]
