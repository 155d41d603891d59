"""Finding flow runs whose process died and putting them back in line.

Self-hosted Prefect leaves the runs of a killed process RUNNING (and runs claimed but
never started PENDING) forever. Each run records its owner in ``infrastructure_pid``:
the warm runner writes ``<host>:<pid>``, Prefect's process worker (3.9) a bare ``<pid>``.
A process id means something only on its own host (and in its own container), so a
watchdog judges a run by its pid only when the owner is on this host (``host``, the
setting ``SCRIBE_HOST_ID``, by default the host name). The rules:

* CRASHED before its last attempt: orphaned, wherever it ran (the server says it died).
* Owned by a process of this host: orphaned when that process is gone.
* Owned elsewhere, or by a bare pid (whose host nobody recorded), or by nobody:
  RUNNING is left alone, the heartbeat automation marks it Crashed if its process stops
  beating (then the first rule applies); PENDING longer than ``grace`` was claimed but
  never started, and is orphaned (a lease, not a pid).

Orphans are set to AwaitingRetry, so a runner runs them again (the flow is idempotent:
same event, same rows). A run whose last attempt crashed is reported through ``report``
(``chapter.failed``, the platform's notice, the event parked as retriable: its own
failure hook never ran when its process died), marked reported (the tag of
:mod:`prefect_bridge.unreported`) and then set Failed, which takes it out of the runs a
watchdog reads here. Failed runs whose own report could not be published are reported by
:func:`prefect_bridge.unreported.report_unreported`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry, Failed

from prefect_bridge.run_pages import every_run
from prefect_bridge.unreported import is_reported, mark_reported

log = logging.getLogger("scribe.recovery")

#: A run that crashed (its process died: SIGTERM, OOM, a lost API) is run again until it
#: has started this many times; then its crash is final and reported like a failure.
MAX_CRASH_ATTEMPTS = 3


#: Reports the final crash of the run with these parameters: ``(params, reason, run_id)``.
CrashReport = Callable[[dict[str, Any], str, str], Awaitable[None]]


def this_host(configured: str | None = None) -> str:
    """This host's identity in run owners: ``configured`` (``SCRIBE_HOST_ID``) or its name."""
    return configured or socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """The process recorded as a run's owner; ``host`` is ``None`` for a bare pid."""

    host: str | None
    pid: int


def parse_owner(infrastructure_pid: str | None) -> Owner | None:
    """``<host>:<pid>`` or ``<pid>``; ``None`` when nothing usable is recorded."""
    host, _, pid = (infrastructure_pid or "").rpartition(":")
    if not pid.isdigit():
        return None
    return Owner(host or None, int(pid))


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphan_reason(
    state_type: str,
    infrastructure_pid: str | None,
    since: datetime | None,
    now: datetime,
    alive: Callable[[int], bool],
    grace: timedelta,
    run_count: int = 0,
    *,
    host: str | None = None,
) -> str | None:
    """Why the run is orphaned (see the module docstring), or ``None`` if it is not.

    ``host`` is this host's identity (default :func:`this_host`); ``since`` is when the run
    entered its state.
    """
    if state_type == "CRASHED":
        if run_count < MAX_CRASH_ATTEMPTS:
            return f"crashed on attempt {run_count} of {MAX_CRASH_ATTEMPTS}"
        return None
    owner = parse_owner(infrastructure_pid)
    if owner is not None and owner.host == this_host(host):
        return None if alive(owner.pid) else f"its process {infrastructure_pid} is gone"
    if state_type == "PENDING" and since is not None and now - since > grace:
        who = f"claimed by {infrastructure_pid}" if infrastructure_pid else "claimed"
        return f"{who} and pending for {(now - since).total_seconds():.0f}s"
    return None


def is_orphan(
    state_type: str,
    infrastructure_pid: str | None,
    since: datetime | None,
    now: datetime,
    alive: Callable[[int], bool],
    grace: timedelta,
    run_count: int = 0,
    *,
    host: str | None = None,
) -> bool:
    """Whether :func:`orphan_reason` finds a reason."""
    reason = orphan_reason(
        state_type, infrastructure_pid, since, now, alive, grace, run_count, host=host
    )
    return reason is not None


async def crash_count(client: PrefectClient, flow_run_id: UUID) -> int:
    """How often the run crashed, from its state history.

    ``run_count`` only grows when the flow body starts, so a run that crashes before it
    (a flow that cannot load, parameters it rejects) would never reach its last attempt.
    """
    states = await client.read_flow_run_states(flow_run_id)
    return sum(1 for s in states if s.type == StateType.CRASHED)


async def recover_orphans(
    client: PrefectClient,
    deployment_id: UUID,
    alive: Callable[[int], bool] = pid_alive,
    grace: timedelta = timedelta(seconds=60),
    host: str | None = None,
    report: CrashReport | None = None,
) -> list[str]:
    """Reschedule the deployment's orphaned runs, report its finally crashed ones.

    Returns the names of the runs acted on. ``host``: this host's identity
    (``SCRIBE_HOST_ID``; default the host name), the one the runners of this host record
    in ``infrastructure_pid``. Without ``report`` a run that crashed for good is left as
    it is. When two watchdogs report the same run at once, the chapter is reported twice:
    harmless (the ledger and the redrive's idempotency key absorb it).
    """
    here = this_host(host)
    runs = await _watched_runs(client, deployment_id)
    now = datetime.now(UTC)
    acted = []
    for run in runs:
        state = run.state
        if state is None:
            continue
        attempts = run.run_count
        if state.type.value == StateType.CRASHED.value:
            attempts = max(attempts, await crash_count(client, run.id))
            if attempts >= MAX_CRASH_ATTEMPTS:
                if report is not None:
                    try:
                        await _report_final_crash(client, run, attempts, here, report)
                    except Exception as exc:  # Kafka away: left CRASHED, reported next round
                        log.warning("flow run %s: its last crash not reported: %s", run.name, exc)
                        continue
                    acted.append(str(run.name))
                continue
        reason = orphan_reason(
            state.type.value,
            run.infrastructure_pid,
            state.timestamp,
            now,
            alive,
            grace,
            attempts,
            host=here,
        )
        if reason is not None:
            await client.set_flow_run_state(
                run.id, AwaitingRetry(message=f"scribe on {here}: {reason}"), force=True
            )
            log.warning("rescheduled orphaned flow run %s (%s): %s", run.name, run.id, reason)
            acted.append(str(run.name))
    return acted


async def _watched_runs(client: PrefectClient, deployment_id: UUID) -> list[Any]:
    """Every RUNNING, PENDING or CRASHED run of the deployment, all pages read first."""
    watched = [StateType.RUNNING, StateType.PENDING, StateType.CRASHED]
    return await every_run(
        client,
        deployment_id,
        FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=watched))),
    )


async def _report_final_crash(
    client: PrefectClient, run: Any, attempts: int, here: str, report: CrashReport
) -> None:
    """Report, mark, then set Failed: a report lost to an error is made again next round,
    a marked one is not (the mark also keeps it from the reports of failed runs)."""
    state = run.state
    reason = f"CRASHED: crashed on all {attempts} attempts; the last: {state.message or state.name}"
    if not is_reported(run.tags):
        await report(dict(run.parameters or {}), reason, str(run.id))
        await mark_reported(client, run.id, run.tags)
    await client.set_flow_run_state(
        run.id, Failed(message=f"scribe on {here}: {reason} (reported)"), force=True
    )
    log.error("flow run %s (%s) crashed for good and is reported: %s", run.name, run.id, reason)
