"""When a full rebuild switches the alias (issue 19, hole 4): ``streams.commands.cutover``."""

from __future__ import annotations

from streams.commands.cutover import ReadAgain, Switch, decide_cutover


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
