"""A warm runner's failed round (Prefect away) must leave the runs in flight alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from prefect_bridge import warm_runner


class FlakyPrefect:
    """Hands out one due run, then fails every call while ``down`` (a Prefect outage)."""

    def __init__(self) -> None:
        self.run = SimpleNamespace(id=uuid.uuid4(), name="n/c@v1")
        self.handed_out = False
        self.down = False
        self.failed_calls = 0

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise httpx.ConnectError("All connection attempts failed")

    async def get_scheduled_flow_runs_for_deployments(self, *_: Any, **__: Any) -> list[Any]:
        self._check()
        if self.handed_out:
            return []
        self.handed_out = True
        return [self.run]

    async def update_flow_run(self, run_id: Any, **_: Any) -> None:
        self._check()

    async def read_flow_run(self, run_id: Any) -> Any:
        self._check()
        return SimpleNamespace(
            id=run_id, name=self.run.name, state=SimpleNamespace(is_cancelling=lambda: False)
        )


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` on the running loop, for up to 5 s."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Claims always win; a run executes until the returned event is set, then completes."""
    release = asyncio.Event()

    async def pending(*_: Any, **__: Any) -> Any:
        return SimpleNamespace(is_pending=lambda: True)

    async def run_flow(*_: Any, **__: Any) -> Any:
        await release.wait()
        return SimpleNamespace(type=SimpleNamespace(value="COMPLETED"))

    monkeypatch.setattr(warm_runner, "propose_state", pending)
    monkeypatch.setattr(warm_runner, "run_flow", run_flow)
    monkeypatch.setattr(warm_runner, "get_events_subscriber", None)  # no stream: poll only
    monkeypatch.setattr(warm_runner, "STREAM_RETRY_SECONDS", 60.0)
    return release


def runner_with(
    prefect: FlakyPrefect, finished: list[str], beats: list[int], **kwargs: Any
) -> warm_runner.WarmRunner:
    return warm_runner.WarmRunner(
        prefect,  # type: ignore[arg-type]
        None,
        uuid.uuid4(),
        limit=2,
        poll_seconds=0.01,
        on_finished=finished.append,
        on_progress=lambda: beats.append(1),
        **kwargs,
    )


async def test_a_failed_round_leaves_the_runs_in_flight_running(engine: asyncio.Event) -> None:
    """Found by reading (issue 19, hole 9): a round that could not reach Prefect ended
    ``run_forever``, whose exit cancelled every run in flight; the loop was then started
    again, and the cancelled runs waited for the watchdog (or stayed Running)."""
    prefect, finished, beats = FlakyPrefect(), [], []
    runner = runner_with(prefect, finished, beats)
    loop = asyncio.create_task(runner.run_forever())
    try:
        await until(lambda: bool(runner._running), "the run claimed")
        prefect.down = True
        await until(lambda: prefect.failed_calls >= 3 or loop.done(), "failed rounds")
        assert not loop.done(), loop.exception()  # the loop rides out the outage
        beats_during = len(beats)
        engine.set()  # the run, which never needed the loop's client, completes
        await until(lambda: bool(finished), "the run finished")
        assert finished == ["COMPLETED"]
        assert len(beats) == beats_during  # no health beat while rounds fail
        prefect.down = False
        await until(lambda: len(beats) > beats_during, "a beat after the outage")
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_runner_that_gives_up_lets_its_runs_finish_before_it_stops(
    engine: asyncio.Event,
) -> None:
    """Past ``give_up_after`` seconds of failed rounds the loop stops (and is started
    again with fresh clients), but only once the runs in flight have ended."""
    prefect, finished, beats = FlakyPrefect(), [], []
    runner = runner_with(prefect, finished, beats, give_up_after=0.05)
    loop = asyncio.create_task(runner.run_forever())
    await until(lambda: bool(runner._running), "the run claimed")
    prefect.down = True
    await until(lambda: prefect.failed_calls >= 3, "failed rounds")
    await asyncio.sleep(0.1)  # well past give_up_after
    assert not loop.done() and not finished  # draining: the run goes on
    engine.set()
    with pytest.raises(httpx.ConnectError):
        await asyncio.wait_for(loop, 5)
    assert finished == ["COMPLETED"]
