"""A runner that starts while Prefect is away waits for it instead of exiting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from streams import runner
from streams.settings import Settings


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("PATCH", "http://prefect/api/work_pools/default-pool")
    return httpx.HTTPStatusError("no", request=request, response=httpx.Response(code))


async def test_deploy_is_retried_while_prefect_or_its_database_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chaos campaign, seed 106: restarted during a PostgreSQL pause, the runner got a 500
    from Prefect at its start and exited 1."""
    answers: list[Any] = [
        httpx.ConnectError("refused"),
        status_error(500),
        TimeoutError(),
        "deployment-id",
    ]

    async def deploy(settings: Settings) -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    monkeypatch.setattr(runner, "deploy", deploy)
    got = await runner.deploy_when_ready(Settings(), first_delay=0.01)
    assert got == "deployment-id" and answers == []


async def test_deploy_errors_that_retrying_cannot_fix_raise_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    async def deploy(settings: Settings) -> str:
        nonlocal calls
        calls += 1
        raise status_error(422)

    monkeypatch.setattr(runner, "deploy", deploy)
    with pytest.raises(httpx.HTTPStatusError):
        await runner.deploy_when_ready(Settings(), first_delay=0.01)
    assert calls == 1


async def test_deploy_gives_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    async def deploy(settings: Settings) -> str:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(runner, "deploy", deploy)
    with pytest.raises(httpx.ConnectError):
        await runner.deploy_when_ready(Settings(), patience=0.05, first_delay=0.01)
