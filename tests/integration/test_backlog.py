"""A backlog larger than the runner's slots: the Prefect UI must not call the runs late.

Prefect's late-runs service marks a run Late when it sits in Scheduled 15 s past its
start time, and the UI appends "(N late)" to any run that started over 60 s after it was
expected. Runs that wait for a runner slot are neither: with the chapter agent's in-flight
bound at the runner's slots, a run is created only when a slot can take it, and the
backlog waits in Kafka (consumer lag, ``scribe status``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.integration.harness import Stack, event, index_of, wait_for


def _chapter(tag: str) -> str:  # ~10 chunks of their own: each run takes a while
    return "".join(
        f"{tag}第{i}句：那猴王在花果山水帘洞中，与群猴饮酒作乐，好不快活。" for i in range(180)
    )


def _runs(stack: Stack, novel: str) -> list[dict[str, Any]]:
    return list(
        stack.prefect(
            "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}, "limit": 200}
        )
    )


def test_a_backlog_never_makes_runs_late(stack: Stack) -> None:
    slots = stack.settings.runner_limit
    worker = stack.worker
    original_env = dict(worker.env)
    if stack.settings.in_flight_bound != slots:  # this session's worker runs with another bound
        worker.stop()
        worker.env = {**original_env, "SCRIBE_MAX_IN_FLIGHT": str(slots)}
        worker.start()
    novel = f"backlog-{uuid.uuid4().hex[:6]}"
    count = 3 * slots
    try:
        asyncio.run(
            stack.produce(
                [
                    (
                        novel.encode(),
                        event(
                            "chapter.created", novel, f"c{i}", 1, title="t", text=_chapter(f"c{i}")
                        ),
                    )
                    for i in range(count)
                ]
            )
        )
        wait_for(lambda: _all_indexed(stack, novel, count), 900, f"{count} chapters", stack)
    finally:
        if worker.env != original_env:
            worker.stop()
            worker.env = original_env
            worker.start()
    runs = _runs(stack, novel)
    assert len(runs) == count
    for run in runs:
        states = stack.prefect(f"/flow_run_states/?flow_run_id={run['id']}", None, "GET")
        names = [s["name"] for s in states]
        assert "Late" not in names, (run["name"], names)
        # the UI shows "(N late)" past 60 s between the expected and the actual start
        assert run["estimated_start_time_delta"] <= 60, (run["name"], run)


def _all_indexed(stack: Stack, novel: str, count: int) -> bool:
    index = index_of(stack, novel)
    return len(index) == count and all(versions == {1} for versions, _, _ in index.values())
