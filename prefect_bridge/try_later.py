"""A service away is "try later", not a failure of the chapter.

A flow run that cannot reach Kafka (its event read, its publish) or another backing
service after its tasks' own retries does not fail: it ends in ``AwaitingRetry``,
scheduled a little later, and a runner (warm or process worker) claims it again then,
without holding a slot meanwhile. Only errors that say so (``retriable``, see
:mod:`schemas.errors`) are tried later; the decision never reads a message.

The delay doubles from :data:`FIRST_DELAY_SECONDS` to :data:`MAX_DELAY_SECONDS`, and the
run is tried later at most until it has started :data:`MAX_SERVICE_ATTEMPTS` times (about
40 minutes of an outage): then the error fails the run like any other, so a service that
never comes back, or an error wrongly marked retriable, ends reported and visible instead
of rescheduled forever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import State
from prefect.states import AwaitingRetry

from schemas import ScribeError

#: A run is tried later until it has started this many times (its ``run_count``).
MAX_SERVICE_ATTEMPTS = 12

#: Seconds before the first try after a service was away; doubled at each attempt.
FIRST_DELAY_SECONDS = 15.0

#: The longest wait between two tries.
MAX_DELAY_SECONDS = 300.0


def try_later_delay(error: BaseException, run_count: int) -> float | None:
    """Seconds to wait before the run runs again, or ``None`` when ``error`` fails it.

    ``run_count`` is how many times the run has started, this attempt included.
    """
    if not isinstance(error, ScribeError) or not error.retriable:
        return None
    if run_count >= MAX_SERVICE_ATTEMPTS:
        return None
    delay: float = FIRST_DELAY_SECONDS * 2.0 ** max(run_count - 1, 0)
    return min(delay, MAX_DELAY_SECONDS)


def awaiting_service(error: BaseException, run_count: int, now: datetime) -> State | None:
    """The state that puts the run back in line (``None``: ``error`` fails the run)."""
    delay = try_later_delay(error, run_count)
    if delay is None:
        return None
    reason = error.reason if isinstance(error, ScribeError) else str(error)
    return AwaitingRetry(
        scheduled_time=now + timedelta(seconds=delay),
        message=(
            f"scribe: a service is away ({type(error).__name__}: {reason[:500]}); "
            f"attempt {run_count} of {MAX_SERVICE_ATTEMPTS}, next in {delay:.0f}s"
        ),
    )
