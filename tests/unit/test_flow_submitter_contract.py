"""The flow submitter contract on the in-memory submitter (Prefect: tests/integration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.fakes import InMemorySubmitter
from tests.flow_submitter_contract import CONTRACT, Run, Submissions


class FakeSubmissions:
    """The in-memory submitter; its runs as it recorded them."""

    def __init__(self) -> None:
        self.submitter = InMemorySubmitter(running=None)

    async def run(self, run_id: str) -> Run:
        call = self.submitter.made[run_id]
        return Run(call["name"], frozenset(call["tags"]), call["parameters"])


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_flow_submitter_contract(check: Callable[[Submissions], Awaitable[None]]) -> None:
    await check(FakeSubmissions())
