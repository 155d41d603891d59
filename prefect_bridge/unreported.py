"""Failed runs whose failure was never reported, and the mark that says one was.

A run that fails for good is reported by its failure hook (``chapter.failed``, the
platform's notice, the event parked: :mod:`prefect_bridge.failure_report`). When Kafka is
away the hook cannot publish, and a Failed run is never run again: without a second try
its chapter stayed pending in the ledger for good, invisible to ``scribe status``.

So a report, once published, is marked on the run with the tag :data:`REPORTED_TAG`, by
the hook or by the runners' watchdog, and the watchdog reports the deployment's recent
Failed runs that carry no such tag (:func:`report_unreported`), marking each once its
report is out. A tag, because it changes no state: setting Failed again would emit a
second ``prefect.flow-run.Failed`` event (the failure webhook would fire twice) and hide
the run's own failure message; it shows in the UI and survives the run's end. Not the
ledger: it is the result agent's alone (one writer), the runners do not open it, and it
holds chapters, not runs.

A run is left to its own hook for :data:`REPORT_GRACE` after it failed, and looked at for
:data:`REPORT_WINDOW` (older ones are not read again). A report made twice (the hook was
slow, or the mark could not be written) is harmless: the ledger keeps one status per
chapter version and a redrive's idempotency key runs the event once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from prefect_bridge.run_pages import every_run

log = logging.getLogger("scribe.recovery")

#: On a run whose failure (or last crash) is reported.
REPORTED_TAG = "scribe:reported"

#: How long a failed run is left to its own failure hook before the watchdog reports it.
REPORT_GRACE = timedelta(seconds=120)

#: How far back the watchdog looks for failed runs that were never reported.
REPORT_WINDOW = timedelta(hours=24)


#: Reports the failure of the run with these parameters: ``(params, reason, run_id)``.
FailureReport = Callable[[dict[str, Any], str, str], Awaitable[None]]


def is_reported(tags: Iterable[str] | None) -> bool:
    """Whether a run's tags say its failure was reported."""
    return REPORTED_TAG in (tags or ())


def needs_report(
    state_type: str,
    tags: Iterable[str] | None,
    since: datetime | None,
    now: datetime,
    grace: timedelta = REPORT_GRACE,
    window: timedelta = REPORT_WINDOW,
) -> bool:
    """Whether the watchdog reports this run: FAILED, unmarked, failed ``since`` longer
    than ``grace`` ago (its hook is done) and within ``window``."""
    if state_type != "FAILED" or is_reported(tags) or since is None:
        return False
    return grace < now - since <= window


async def mark_reported(client: PrefectClient, run_id: UUID, tags: Iterable[str] | None) -> None:
    """Add :data:`REPORTED_TAG` to the run's tags (kept as they are otherwise)."""
    current = list(tags or ())
    if REPORTED_TAG not in current:
        await client.update_flow_run(run_id, tags=[*current, REPORTED_TAG])


async def report_unreported(
    client: PrefectClient,
    deployment_id: UUID,
    report: FailureReport,
    now: datetime | None = None,
) -> list[str]:
    """Report the deployment's failed runs that need it (:func:`needs_report`), then mark
    each. A report that fails (Kafka still away) leaves its run unmarked for the next
    round, and the others are still tried. Returns the names of the runs reported."""
    now = now or datetime.now(UTC)
    done = []
    for run in await _recent_failures(client, deployment_id, now - REPORT_WINDOW):
        state = run.state
        if state is None or not needs_report(state.type.value, run.tags, state.timestamp, now):
            continue
        reason = f"{state.type.value}: {state.message or state.name}"
        try:
            await report(dict(run.parameters or {}), reason, str(run.id))
            await mark_reported(client, run.id, run.tags)
        except Exception as exc:  # Kafka (or Prefect) away: the next round tries again
            log.warning("flow run %s: its failure not reported yet: %s", run.name, exc)
            continue
        log.error("flow run %s (%s) failed and is reported by the watchdog", run.name, run.id)
        done.append(str(run.name))
    return done


async def _recent_failures(
    client: PrefectClient, deployment_id: UUID, after: datetime
) -> list[Any]:
    """The deployment's FAILED runs that ended after ``after``, every page."""
    failed = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
    return await every_run(
        client,
        deployment_id,
        FlowRunFilter(state=failed, end_time=FlowRunFilterEndTime(after_=after)),
    )
