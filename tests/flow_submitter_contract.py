"""Contract every FlowSubmitter adapter must meet: run against the fake and real Prefect.

Each ``check_*`` coroutine takes a fresh :class:`Submissions`: the submitter under test,
bound to a deployment that nothing executes (its runs stay scheduled, so ``in_flight``
counts exactly what the check submitted), and a way to read back a run as Prefect holds
it. ``tests/unit/test_flow_submitter_contract.py`` runs them on the in-memory submitter,
``tests/integration/test_flow_submitter.py`` on a real Prefect server.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from agents.ports import FlowSubmitter


class Run(NamedTuple):
    """A flow run as the orchestrator holds it."""

    name: str
    tags: frozenset[str]
    parameters: dict[str, Any]


class Submissions(Protocol):
    """The submitter under test, and what its orchestrator holds."""

    submitter: FlowSubmitter

    async def run(self, run_id: str) -> Run:
        """The run with this id."""
        ...


def _params(n: int) -> dict[str, Any]:
    return {"novel_id": f"n-{n}", "chapter_id": "c1", "version": n}


def _key() -> str:
    return f"contract-{uuid.uuid4().hex}"


async def check_a_run_carries_its_name_tags_and_parameters(s: Submissions) -> None:
    submitted = await s.submitter.submit(
        name="contract-n-1-c1-v1",
        idempotency_key=_key(),
        tags=["novel:n-1", "contract"],
        parameters=_params(1),
    )
    assert not submitted.ended
    run = await s.run(submitted.id)
    assert run == Run("contract-n-1-c1-v1", frozenset({"novel:n-1", "contract"}), _params(1))


async def check_the_same_key_returns_the_run_it_made_first(s: Submissions) -> None:
    key = _key()
    first = await s.submitter.submit(
        name="first", idempotency_key=key, tags=[], parameters=_params(1)
    )
    # A re-delivered event: same key, whatever else differs, is the same run, unchanged.
    again = await s.submitter.submit(
        name="second", idempotency_key=key, tags=["x"], parameters=_params(2)
    )
    assert again.id == first.id
    assert (await s.run(first.id)).parameters == _params(1)


async def check_distinct_keys_make_distinct_runs(s: Submissions) -> None:
    ids = {
        (
            await s.submitter.submit(
                name="r", idempotency_key=_key(), tags=[], parameters=_params(n)
            )
        ).id
        for n in range(3)
    }
    assert len(ids) == 3


async def check_in_flight_counts_runs_not_yet_ended_once_each(s: Submissions) -> None:
    before = await s.submitter.in_flight()
    key = _key()
    for _ in range(2):  # the second call finds the first run: still one in flight
        await s.submitter.submit(name="a", idempotency_key=key, tags=[], parameters=_params(1))
    await s.submitter.submit(name="b", idempotency_key=_key(), tags=[], parameters=_params(2))
    assert await s.submitter.in_flight() == before + 2


CONTRACT: list[Callable[[Submissions], Awaitable[None]]] = [
    check_a_run_carries_its_name_tags_and_parameters,
    check_the_same_key_returns_the_run_it_made_first,
    check_distinct_keys_make_distinct_runs,
    check_in_flight_counts_runs_not_yet_ended_once_each,
]
