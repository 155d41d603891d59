"""The ledger contract on the production adapter: PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from agents.ledger import Ledger
from streams.adapters.ledger.postgres import PostgresLedger
from tests.integration.harness import Stack
from tests.ledger_contract import CONTRACT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_postgres_ledger_contract(stack: Stack, check: Callable[[Ledger], Awaitable[None]]) -> None:
    assert stack.settings.ledger_url is not None

    async def run() -> None:
        # A fresh scope per check: the same tables, separate books.
        ledger = await PostgresLedger(
            stack.settings.ledger_url.get_secret_value(), scope=f"contract-{uuid.uuid4().hex}"
        ).connect()
        try:
            await check(ledger)
        finally:
            await ledger.close()

    asyncio.run(run())
