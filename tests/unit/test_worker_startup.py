"""The worker's start-up and its ledger errors: restarts of PostgreSQL are waited out."""

from __future__ import annotations

from typing import Any

import pytest
from asyncpg import exceptions as pg

from agents.ledger import LedgerUnavailable
from agents.retry import Backoff
from schemas import ServiceUnavailable
from streams import wiring
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.ledger.postgres import PostgresLedger, transient_errors
from streams.settings import Settings


@pytest.mark.parametrize(
    "error",
    [
        pg.AdminShutdownError,  # the server is shutting down (a restart)
        pg.CannotConnectNowError,  # ... and starting up again
        pg.TooManyConnectionsError,
        pg.CrashShutdownError,
        ConnectionResetError,
    ],
)
async def test_a_restarting_postgres_is_a_retriable_ledger_error(error: type[Exception]) -> None:
    assert issubclass(error, transient_errors())

    class Pool:
        async def fetchrow(self, *args: Any) -> Any:
            raise error("terminating connection due to administrator command")

    ledger = PostgresLedger("postgresql://unused")
    ledger._pool = Pool()
    with pytest.raises(LedgerUnavailable) as caught:
        await ledger.chapter("n", "c")
    assert caught.value.retriable


async def test_a_statement_error_is_not_retried() -> None:
    class Pool:
        async def fetchrow(self, *args: Any) -> Any:
            raise pg.UndefinedTableError("relation does not exist")

    ledger = PostgresLedger("postgresql://unused")
    ledger._pool = Pool()
    with pytest.raises(pg.UndefinedTableError):
        await ledger.chapter("n", "c")


async def test_start_up_waits_for_services_and_closes_what_a_failed_attempt_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[Any] = []

    class Producer:
        def __init__(self) -> None:
            self.stopped = False
            started.append(self)

        async def stop(self) -> None:
            self.stopped = True

    async def start_producer(connection: KafkaConnection, max_request_size: int) -> Producer:
        return Producer()

    attempts = []

    def pipeline(settings: Settings) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ServiceUnavailable("Milvus is not up yet")
        raise RuntimeError("stop here: the rest needs the real services")

    monkeypatch.setattr(wiring, "start_producer", start_producer)
    # This process imported Prefect long ago with the test defaults: skip the export check.
    monkeypatch.setattr(wiring, "export_prefect_env", lambda settings: None)
    monkeypatch.setattr(wiring, "pipeline", pipeline)
    resources = wiring.WorkerResources(Settings(), Backoff(initial=0.001, cap=0.001))
    with pytest.raises(RuntimeError, match="stop here"):
        await resources.get()
    assert len(attempts) == 3  # retried while the error said retriable
    assert len(started) == 3 and all(p.stopped for p in started)  # nothing leaked
