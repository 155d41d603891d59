"""When a full rebuild points the alias at its collection: the cut-over, decided purely.

A rebuild reads the input log in rounds, as online schema migrations copy a table: to the
end of the log as it was, then (once its own runs ended and the worker applied their
results) to the new end, and so on. It switches once the messages logged during the last
round are few (``lag`` at most ``max_lag``): those are the only ones the new collection
lacks when search moves to it, and the round after the switch applies them. Under traffic
as fast as the rebuild itself the rounds would never shrink, so after ``max_rounds`` it
switches whatever the lag, and says so.

A chapter whose run failed for good in the rebuild while the live index holds it would be
*missing* after the switch. Before switching, the rebuild runs each such chapter once more;
if some stay missing it refuses to switch unless the operator said ``--force``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadAgain:
    """Read one more round before switching: too much was logged meanwhile."""

    reason: str


@dataclass(frozen=True)
class Switch:
    """Point the alias at the rebuilt collection now."""

    reason: str
    #: Switched at the round bound, further behind than ``max_lag``.
    late: bool = False


@dataclass(frozen=True)
class RetryMissing:
    """Run the missing chapters not retried yet once more, then decide again."""

    reason: str


@dataclass(frozen=True)
class Refuse:
    """Do not switch: chapters the live index holds failed for good in the rebuild."""

    reason: str


Cutover = ReadAgain | Switch | RetryMissing | Refuse


def decide_cutover(
    lag: int,
    rounds: int,
    max_lag: int,
    max_rounds: int,
    missing: int = 0,
    unretried: int = 0,
    force: bool = False,
) -> Cutover:
    """Whether to switch after ``rounds`` finished rounds, ``lag`` messages behind the end.

    ``lag`` counts the input messages logged since the last round's end, measured against
    a fresh end offset once that round has settled (never against an end that keeps
    moving while it is compared). ``missing`` chapters failed for good in the rebuild
    while the live index holds them, ``unretried`` of them were not run again yet.
    """
    if lag > max_lag and rounds < max_rounds:
        return ReadAgain(f"{lag} messages logged during round {rounds} (bound {max_lag})")
    if unretried:
        return RetryMissing(f"{unretried} chapters failed in the rebuild: running them again")
    if missing and not force:
        return Refuse(
            f"{missing} chapters the live index holds failed for good in the rebuild (parked "
            "in the DLQ with their target): not switching; fix and redrive them, then rebuild "
            "again, or switch without them with --force"
        )
    return _switch(lag, rounds, max_lag)


def _switch(lag: int, rounds: int, max_lag: int) -> Switch:
    if lag <= max_lag:
        return Switch(f"{lag} messages behind the log after {rounds} rounds (bound {max_lag})")
    return Switch(
        f"still {lag} messages behind after {rounds} rounds (bound {max_lag}): switching "
        "anyway, traffic is as fast as the rebuild; the round after the switch applies them",
        late=True,
    )
