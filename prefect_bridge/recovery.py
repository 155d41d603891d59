"""Finding flow runs whose process died and putting them back in line.

Self-hosted Prefect leaves the runs of a killed process RUNNING (and runs claimed but
never started PENDING) forever. A runner on the same host can tell: the process worker
records each run's process id in ``infrastructure_pid``. Runs whose process is gone are
set to AwaitingRetry, so a worker runs them again (the flow is idempotent: same event,
same rows).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry

log = logging.getLogger("scribe.recovery")

#: A run that crashed (its process died: SIGTERM, OOM, a lost API) is run again until it
#: has started this many times; then its crash is final and reported like a failure.
MAX_CRASH_ATTEMPTS = 3


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphan(
    state_type: str,
    infrastructure_pid: str | None,
    since: datetime | None,
    now: datetime,
    alive: Callable[[int], bool],
    grace: timedelta,
    run_count: int = 0,
) -> bool:
    """A run is orphaned when its recorded process is gone, when it was claimed (PENDING)
    longer than ``grace`` ago with no process recorded, or when it crashed before its
    last attempt."""
    if state_type == "CRASHED":
        return run_count < MAX_CRASH_ATTEMPTS
    pid = infrastructure_pid.rsplit(":", 1)[-1] if infrastructure_pid else ""
    if pid.isdigit():
        return not alive(int(pid))
    if state_type == "PENDING":
        return since is not None and now - since > grace
    return False


async def recover_orphans(
    client: PrefectClient,
    deployment_id: UUID,
    alive: Callable[[int], bool] = pid_alive,
    grace: timedelta = timedelta(seconds=60),
) -> list[str]:
    """Reschedule the deployment's orphaned runs; return their names."""
    runs: list[Any] = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(
                    any_=[StateType.RUNNING, StateType.PENDING, StateType.CRASHED]
                )
            )
        ),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        limit=200,
    )
    now = datetime.now(UTC)
    recovered = []
    for run in runs:
        state = run.state
        if state is None:
            continue
        if is_orphan(
            state.type.value,
            run.infrastructure_pid,
            state.timestamp,
            now,
            alive,
            grace,
            run.run_count,
        ):
            await client.set_flow_run_state(
                run.id, AwaitingRetry(message="scribe: the run's process is gone"), force=True
            )
            log.warning("rescheduled orphaned flow run %s (%s)", run.name, run.id)
            recovered.append(str(run.name))
    return recovered
