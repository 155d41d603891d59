"""A warm flow runner: executes the deployment's runs inside one long-lived process.

Prefect's process worker starts a new interpreter per run (~2.4 CPU-s of overhead and a
fresh embedder each time). This runner claims due runs of ``novel-processing`` itself and
drives each with Prefect's own engine (``prefect.flow_engine.run_flow``), so every run
shows up in the UI exactly like a standard one (states, task runs, retries, logs), while
the embedding model stays loaded and at most ``limit`` runs execute at once.

* Claiming: due runs come from ``get_scheduled_flow_runs_for_deployments``; a run is
  claimed by proposing Pending, and the server lets one claimer win (others get Abort),
  so several runners (warm or standard) can share a deployment.
* Ownership: a claimed run records ``infrastructure_pid = <host>:<pid>``; the watchdog
  (``prefect_bridge.recovery``) of any runner on this host reschedules it when this
  process is gone.
* Cancellation: runs of ours that enter Cancelling are cancelled and marked Cancelled.
* Deadline: a run still executing ``run_deadline`` seconds after it was claimed (its
  flow timeout is over and its failure hooks should be long done) is cancelled, which
  frees its slot; the engine records the cancellation as a crash, which the watchdog
  reschedules. ``on_progress`` is called after each round of the loop that reached
  Prefect, unless a run outlived its deadline and its cancellation: the process's
  health beats there, so /health turns red when the runner cannot claim runs or its
  slots are stuck.
* Outages: a round that cannot reach Prefect (claims, cancellation checks) is retried
  with backoff while the runs in flight go on: they drive their own engine clients, and
  cancelling them would leave them Running (their end cannot be recorded while Prefect is
  away) or for the watchdog. No health beat while rounds fail. Only after
  ``give_up_after`` seconds of failed rounds does the loop stop claiming, wait for its
  runs to end (deadlines still apply) and raise, so that ``serve_warm`` starts a new
  loop with fresh clients.
* Wake-up: the runner subscribes to the server's event stream for the deployment's
  ``prefect.flow-run.Scheduled`` events and claims a new run at once instead of at the
  next poll; polling stays as the fallback (the stream may be down or unavailable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow
from prefect.states import Cancelled, Pending
from prefect.utilities.engine import propose_state

log = logging.getLogger("scribe.warm_runner")

#: Seconds between attempts to (re)open the event stream.
STREAM_RETRY_SECONDS = 10.0

#: Longest pause between two rounds while rounds fail (Prefect away).
ROUND_RETRY_MAX_SECONDS = 30.0

#: Seconds of failed rounds after which the loop drains its runs and raises.
GIVE_UP_SECONDS = 600.0

#: Seconds a run cancelled at its deadline may take to end before the runner is unhealthy.
CANCEL_GRACE_SECONDS = 60.0


def owner_id(host: str | None = None) -> str:
    """``<host>:<pid>`` of this process, stored in the runs it executes (``host``:
    ``SCRIBE_HOST_ID``, by default the host name; the watchdog compares it)."""
    return f"{host or socket.gethostname()}:{os.getpid()}"


class WarmRunner:
    """Polls, claims and executes runs of one deployment, ``limit`` at a time."""

    def __init__(
        self,
        client: PrefectClient,
        flow: Any,
        deployment_id: UUID,
        limit: int,
        poll_seconds: float = 1.0,
        on_finished: Callable[[str], None] | None = None,
        run_deadline: float | None = None,
        on_progress: Callable[[], None] | None = None,
        host: str | None = None,
        give_up_after: float = GIVE_UP_SECONDS,
    ) -> None:
        self._client = client
        self._owner = owner_id(host)
        self._flow = flow
        self._deployment_id = deployment_id
        self._limit = limit
        self._poll = poll_seconds
        self._running: dict[UUID, asyncio.Task[Any]] = {}
        self._claimed_at: dict[UUID, float] = {}
        self._expired: set[UUID] = set()
        self._on_finished = on_finished
        self._deadline = run_deadline
        self._on_progress = on_progress
        self._give_up_after = give_up_after
        self._wake = asyncio.Event()
        self.completed = 0
        #: Wake-ups by the event stream (a run scheduled between two polls).
        self.woken = 0

    async def run_forever(self) -> None:
        """Poll and execute until cancelled (in-flight runs are cancelled with it), or
        until rounds failed for ``give_up_after`` seconds (raised once its runs ended)."""
        listener = asyncio.create_task(self._listen(), name="scheduled-run events")
        failures, failing_since = 0, 0.0
        try:
            while True:
                try:
                    await self._fill()
                    await self._watch_cancellations()
                except Exception as exc:  # Prefect away: the runs in flight do not need us
                    failures += 1
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > self._give_up_after:
                        log.error(
                            "rounds failed for %.0fs (%s): draining", self._give_up_after, exc
                        )
                        await self._drain()
                        raise
                    delay = min(self._poll * 2**failures, ROUND_RETRY_MAX_SECONDS)
                    log.warning(
                        "round failed (%s); %d runs in flight go on; next try in %.1fs",
                        exc,
                        len(self._running),
                        delay,
                    )
                    self.check_deadlines()
                    await self._idle(delay)
                    continue
                failures, failing_since = 0, 0.0
                if self.check_deadlines() and self._on_progress is not None:
                    self._on_progress()
                await self._idle(self._poll)
        finally:
            listener.cancel()
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(listener, *self._running.values(), return_exceptions=True)

    async def _drain(self) -> None:
        """Claim nothing more; wait until every run in flight ended (deadlines apply)."""
        while self._running:
            self.check_deadlines()
            await asyncio.wait(set(self._running.values()), timeout=self._poll)

    async def _idle(self, seconds: float) -> None:
        """Until a run ends, a run is scheduled (event) or ``seconds`` are over."""
        wake = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait(
                {wake, *self._running.values()},
                timeout=seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            wake.cancel()
        self._wake.clear()

    async def _listen(self) -> None:
        """Set the wake-up flag on each scheduled run of the deployment; reconnect forever."""
        events = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
            related=EventRelatedFilter(id=[f"prefect.deployment.{self._deployment_id}"]),
        )
        while True:
            try:
                async with get_events_subscriber(filter=events, reconnection_attempts=2) as sub:
                    log.info("listening for scheduled runs of deployment %s", self._deployment_id)
                    async for _event in sub:
                        self.woken += 1
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream is an optimisation: polling goes on
                log.warning("event stream unavailable (%s); polling only for now", exc)
            await asyncio.sleep(STREAM_RETRY_SECONDS)

    async def _fill(self) -> None:
        free = self._limit - len(self._running)
        if free <= 0:
            return
        due = await self._client.get_scheduled_flow_runs_for_deployments(
            [self._deployment_id], scheduled_before=datetime.now(UTC), limit=free
        )
        for run in due:
            if run.id in self._running:
                continue
            claimed = await self._claim(run)
            if claimed is not None:
                task = asyncio.create_task(self._execute(claimed), name=f"run {run.name}")
                self._running[run.id] = task
                self._claimed_at[run.id] = time.monotonic()
                task.add_done_callback(partial(self._forget, run.id))

    def _forget(self, run_id: UUID, _task: asyncio.Task[Any]) -> None:
        self._running.pop(run_id, None)
        self._claimed_at.pop(run_id, None)
        self._expired.discard(run_id)

    def check_deadlines(self, now: float | None = None) -> bool:
        """Cancel runs past their deadline; False if one outlived its cancellation too."""
        if self._deadline is None:
            return True
        now = time.monotonic() if now is None else now
        healthy = True
        for run_id, task in list(self._running.items()):
            age = now - self._claimed_at.get(run_id, now)
            if age <= self._deadline:
                continue
            if run_id not in self._expired:
                self._expired.add(run_id)
                log.error(
                    "flow run %s still executing after %.0fs (deadline %.0fs): cancelling it",
                    run_id,
                    age,
                    self._deadline,
                )
                task.cancel()
            elif age > self._deadline + CANCEL_GRACE_SECONDS:
                healthy = False  # cancelled and still not done: a slot is stuck
        return healthy

    async def _claim(self, run: Any) -> Any | None:
        try:
            state = await propose_state(self._client, Pending(), flow_run_id=run.id)
        except Abort:
            return None  # another runner won
        if not state.is_pending():
            return None
        await self._client.update_flow_run(run.id, infrastructure_pid=self._owner)
        return await self._client.read_flow_run(run.id)

    async def _execute(self, run: Any) -> None:
        log.info("executing %s (%s) in process", run.name, run.id)
        outcome = "CRASHED"
        try:
            state = await run_flow(self._flow, flow_run=run, return_type="state")  # type: ignore[misc]
            outcome = str(getattr(getattr(state, "type", None), "value", "UNKNOWN"))
        except asyncio.CancelledError:
            outcome = "TIMED_OUT" if run.id in self._expired else "CANCELLED"
            raise
        except Exception:  # the engine has recorded the failure in Prefect
            log.exception("flow run %s ended with an error", run.name)
        finally:
            self.completed += 1
            if self._on_finished is not None:
                self._on_finished(outcome)

    async def _watch_cancellations(self) -> None:
        for run_id, task in list(self._running.items()):
            run = await self._client.read_flow_run(run_id)
            if run.state is not None and run.state.is_cancelling():
                log.info("cancelling %s on request", run.name)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await propose_state(
                    self._client,
                    Cancelled(message="cancelled by request"),
                    flow_run_id=run_id,
                    force=True,
                )
