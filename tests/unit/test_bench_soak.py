"""The soak's pure parts: its chapters, growth over the second half, the verdict, the report."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import SOAK_CHARS, make_soak_chapters, soak_texts
from bench.soak_report import (
    FLAT_MIB,
    at_done,
    role_summary,
    slope,
    soak_section,
    summarize_series,
    threshold_mib,
    verdict,
)


def _series(chapters: int, rss: Any, step: int = 5) -> list[dict[str, Any]]:
    """Samples every ``step`` chapters, ``rss(done)`` MiB for one role ``p``."""
    out = []
    for done in [0, *range(step, chapters + 1, step)]:
        value = rss(done)
        out.append({"t_s": float(done), "done": done, "rss_mib": {"p": value}, "anon_mib": {}})
    return out


def test_slope_is_the_least_squares_fit() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 0), (1, 1), (2, 0), (3, 1)]) == pytest.approx(0.2)


def test_slope_needs_two_distinct_x() -> None:
    assert slope([]) is None
    assert slope([(1, 5)]) is None
    assert slope([(1, 5), (1, 7)]) is None


def test_at_done_takes_the_first_sample_past_the_mark() -> None:
    samples = _series(100, lambda d: 100.0 + d)
    assert at_done(samples, "p", 10) == 110.0
    assert at_done(samples, "p", 12) == 115.0
    assert at_done(samples, "p", 101) is None
    assert at_done(samples, "q", 10) is None


def test_a_flat_series_with_jitter_is_flat() -> None:
    s = role_summary(_series(500, lambda d: 800.0 + (3 if d % 10 else -3)), "p", 500)
    assert s["rss_10pct_mib"] == 797.0
    assert s["rss_50pct_mib"] == 797.0
    assert s["rss_100pct_mib"] == 797.0
    assert abs(s["growth_second_half_mib"]) < 1
    assert s["verdict"] == "flat"


def test_a_steady_leak_grows() -> None:
    # 0.1 MiB per chapter: 25 MiB over the second half of 500, above the 10 MiB floor.
    s = role_summary(_series(500, lambda d: 200.0 + 0.1 * d), "p", 500)
    assert s["mib_per_100_chapters"] == pytest.approx(10.0)
    assert s["growth_second_half_mib"] == pytest.approx(25.0)
    assert s["end_minus_mid_mib"] == pytest.approx(25.0)
    assert s["verdict"] == "grows"


def test_growth_before_the_middle_does_not_count() -> None:
    # Fills caches over the first half, then stays.
    s = role_summary(_series(500, lambda d: 100.0 + min(d, 250)), "p", 500)
    assert s["rss_10pct_mib"] == 150.0
    assert s["growth_second_half_mib"] == pytest.approx(0.0)
    assert s["verdict"] == "flat"


def test_the_threshold_scales_with_large_processes() -> None:
    assert threshold_mib(100.0) == FLAT_MIB
    assert threshold_mib(2000.0) == pytest.approx(40.0)
    assert verdict(30.0, 2000.0) == "flat"
    assert verdict(30.0, 200.0) == "grows"
    assert verdict(-50.0, 200.0) == "flat"
    assert verdict(None, 200.0) == "n/a"
    assert verdict(5.0, None) == "n/a"


def test_an_unfinished_series_has_no_end_value() -> None:
    s = role_summary(_series(40, lambda d: 50.0), "p", 100)
    assert s["rss_100pct_mib"] is None
    assert s["end_minus_mid_mib"] is None
    assert s["verdict"] == "n/a"  # no samples past the middle


def test_summarize_series_covers_every_role_seen() -> None:
    samples = [
        {"done": 0, "rss_mib": {"a": 1.0}, "anon_mib": {"a": 1.0}},
        {"done": 2, "rss_mib": {"a": 1.0, "b": 2.0}, "anon_mib": {"a": 1.0, "b": 1.0}},
        {"done": 4, "rss_mib": {"a": 1.0, "b": 2.0}, "anon_mib": {"a": 1.0, "b": 1.0}},
    ]
    out = summarize_series(samples, 4)
    assert list(out) == ["a", "b"]
    assert out["b"]["anon_mib_per_100_chapters"] == 0.0


def test_soak_section_without_a_soak_says_so() -> None:
    assert "not run" in "\n".join(soak_section({"errors": {}}))
    assert "failed" in "\n".join(
        soak_section({"errors": {"soak": "BenchTimeout: x"}, "soak": None})
    )


def test_soak_section_has_a_row_per_process_and_the_verdict() -> None:
    samples = _series(100, lambda d: 100.0 + d)
    soak = {
        "chapters": 100,
        "novels": 8,
        "chars_per_chapter": 200,
        "max_in_flight": 8,
        "interval_s": 5.0,
        "run": {"chapters_per_s": 0.7, "chunks_per_s": 0.7, "wall_s": 140.0},
        "processes": summarize_series(samples, 100),
    }
    text = "\n".join(soak_section({"soak": soak}))
    assert "## Soak: 100 chapters, memory over time" in text
    assert "| p | 110 | 150 | 200 |" in text
    assert "grows: p" in text


def test_soak_texts_cycle_through_the_sample() -> None:
    texts = soak_texts(3)
    assert [len(t) for t in texts] == [SOAK_CHARS] * 3
    assert len(set(texts)) == 3
    assert not any(c.isspace() for c in "".join(texts))


def test_soak_chapters_are_one_chunk_each_over_several_novels() -> None:
    chapters = make_soak_chapters("n", 20, len, novels=4)
    assert len({c.ref for c in chapters}) == 20
    assert len({c.novel_id for c in chapters}) == 4
    assert all(c.expected_chunks == 1 for c in chapters)
    assert [c.novel_id for c in chapters[:4]] == ["n-0", "n-1", "n-2", "n-3"]
