"""The sink's flush pacer (pure)."""

from __future__ import annotations

from agents.pacing import FlushPacer


def test_flushes_are_spaced_under_load_and_immediate_after_a_quiet_spell() -> None:
    now = [100.0]
    pacer = FlushPacer(2.0, clock=lambda: now[0])
    assert pacer.pause() == 0.0  # nothing flushed yet
    pacer.flushed()
    now[0] += 0.5
    assert pacer.pause() == 1.5  # the next batch waits and grows meanwhile
    now[0] += 1.5
    assert pacer.pause() == 0.0
    pacer.flushed()
    now[0] += 30  # quiet: a new result is written at once
    assert pacer.pause() == 0.0


def test_an_interval_of_zero_never_waits() -> None:
    pacer = FlushPacer(0.0)
    pacer.flushed()
    assert pacer.pause() == 0.0
