"""When a full rebuild switches the alias (issue 19, hole 4): ``streams.commands.cutover``."""

from __future__ import annotations

from streams.commands.cutover import ReadAgain, Refuse, RetryMissing, Switch, decide_cutover


def test_a_rebuild_reads_again_while_more_than_the_bound_was_logged_meanwhile() -> None:
    assert isinstance(decide_cutover(lag=21, rounds=1, max_lag=20, max_rounds=10), ReadAgain)
    assert isinstance(decide_cutover(lag=500, rounds=9, max_lag=20, max_rounds=10), ReadAgain)


def test_a_rebuild_switches_once_within_the_bound() -> None:
    for lag in (0, 7, 20):
        decision = decide_cutover(lag=lag, rounds=3, max_lag=20, max_rounds=10)
        assert decision == Switch(decision.reason) and not decision.late


def test_steady_traffic_cannot_postpone_the_switch_past_the_round_bound() -> None:
    """Traffic as fast as the rebuild keeps every round as long as the one before: the
    switch comes at the bound, marked late, not never."""
    decisions = [decide_cutover(lag=100, rounds=r, max_lag=20, max_rounds=4) for r in range(1, 9)]
    first = next(i for i, d in enumerate(decisions) if isinstance(d, Switch))
    assert first == 3 and isinstance(decisions[first], Switch)
    assert decisions[first].late  # type: ignore[union-attr]
    assert "100 messages" in decisions[first].reason


def test_a_zero_bound_means_switch_only_when_nothing_was_logged_meanwhile() -> None:
    assert isinstance(decide_cutover(lag=1, rounds=1, max_lag=0, max_rounds=10), ReadAgain)
    assert isinstance(decide_cutover(lag=0, rounds=1, max_lag=0, max_rounds=10), Switch)


def test_chapters_missing_from_the_rebuild_are_run_again_once_before_the_switch() -> None:
    """Hole 5: a chapter failing for good during a rebuild was simply missing after it."""
    decision = decide_cutover(lag=0, rounds=2, max_lag=20, max_rounds=10, missing=2, unretried=1)
    assert isinstance(decision, RetryMissing)
    # Catching up comes first: a retry waits for the round that is still due.
    assert isinstance(
        decide_cutover(lag=50, rounds=2, max_lag=20, max_rounds=10, missing=2, unretried=2),
        ReadAgain,
    )


def test_a_rebuild_missing_chapters_after_their_retry_refuses_to_switch_unless_forced() -> None:
    refused = decide_cutover(lag=0, rounds=3, max_lag=20, max_rounds=10, missing=2)
    assert isinstance(refused, Refuse) and "--force" in refused.reason
    forced = decide_cutover(lag=0, rounds=3, max_lag=20, max_rounds=10, missing=2, force=True)
    assert isinstance(forced, Switch)
    # At the round bound too: the bound never switches past a missing chapter by itself.
    assert isinstance(
        decide_cutover(lag=99, rounds=10, max_lag=20, max_rounds=10, missing=1), Refuse
    )
