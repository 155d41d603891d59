"""The index catalog contract on the in-memory catalog (Milvus: tests/integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.fakes import InMemoryCatalog
from tests.index_catalog_contract import CONTRACT, Catalogued


class FakeCatalogued:
    """The in-memory catalog, with no alias until a check points it."""

    def __init__(self) -> None:
        self.catalog = InMemoryCatalog()

    async def create(self, name: str) -> None:
        self.catalog.create(name)

    async def point(self, name: str) -> None:
        self.catalog.alias = name

    async def drop(self, name: str) -> None:
        del self.catalog.indexes[name]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_index_catalog_contract(check: Callable[[Catalogued], Awaitable[None]]) -> None:
    await check(FakeCatalogued())
