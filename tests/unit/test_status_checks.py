"""The decisions of ``scribe status`` about the index, pending chapters and the sink (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from streams.commands.status_checks import RESINK, findings, index_finding, problems
from streams.commands.status_facts import (
    IndexSample,
    Limits,
    OldestPending,
    StatusFacts,
    WaitingResults,
    facts_of,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LIMITS = Limits(pending_seconds=900, result_wait_seconds=300)
TOPIC = "novel-events.embeddings"


def _checks(facts: StatusFacts) -> list[str]:
    return [f.check for f in findings(facts, LIMITS)]


def test_nothing_to_say_about_a_healthy_stack() -> None:
    facts = StatusFacts(
        now=NOW,
        index=(IndexSample("c", 40, 40),),
        oldest_pending=OldestPending("n", "c1", 2, NOW - timedelta(seconds=60)),
        stale_pending=0,
        waiting=(WaitingResults(TOPIC, 0, 3, NOW - timedelta(seconds=2)),),
    )
    assert findings(facts, LIMITS) == []
    assert findings(StatusFacts(now=NOW), LIMITS) == []  # every section away: no facts


def test_an_index_with_fewer_rows_than_the_ledger_names_the_full_resink() -> None:
    """After Milvus lost its data: an empty collection, the ledger saying 30 rows."""
    (finding,) = findings(
        StatusFacts(now=NOW, index=(IndexSample("c", 0, 30), IndexSample("c", 0, 30))), LIMITS
    )
    assert finding.check == "index_rows"
    assert "holds 0 rows" in finding.problem and "30 missing" in finding.problem
    assert f"`{RESINK}`" in finding.repair and "no --novel" in finding.repair
    assert RESINK in finding.line()
    assert finding.as_json()["repair"] == finding.repair


def test_a_shortfall_one_sample_saw_and_the_next_did_not_is_the_sink_between_writes() -> None:
    """The sink trims the index before it records the shorter chapter in the ledger."""
    assert index_finding((IndexSample("c", 27, 30), IndexSample("c", 30, 30))) is None
    short = index_finding((IndexSample("a", 27, 30), IndexSample("b", 10, 12)))
    assert short is not None and "index b holds 10 rows" in short.problem  # the latest
    assert index_finding(()) is None


def test_more_rows_than_the_ledger_says_is_not_a_loss() -> None:
    """Between the index write and the ledger record a new chapter's rows come first."""
    assert index_finding((IndexSample("c", 35, 30),)) is None


def test_a_chapter_pending_past_the_limit_is_named_with_its_repair() -> None:
    oldest = OldestPending("journey", "c7", 3, NOW - timedelta(minutes=16))
    (finding,) = findings(StatusFacts(now=NOW, stale_pending=4, oldest_pending=oldest), LIMITS)
    assert finding.check == "pending_chapters"
    assert "4 chapter(s) pending for over 15 min" in finding.problem
    assert "journey/c7@v3" in finding.problem
    assert "`scribe replay --novel journey`" in finding.repair


def test_a_chapter_pending_within_the_limit_is_fine() -> None:
    oldest = OldestPending("n", "c", 1, NOW - timedelta(seconds=900))
    assert _checks(StatusFacts(now=NOW, stale_pending=0, oldest_pending=oldest)) == []


def test_results_waiting_past_the_limit_mean_the_sink_is_not_advancing() -> None:
    waiting = (
        WaitingResults(TOPIC, 0, 5, NOW - timedelta(minutes=6)),
        WaitingResults(TOPIC, 1, 2, NOW - timedelta(seconds=10)),  # recent: fine
        WaitingResults(TOPIC, 2, 0, NOW - timedelta(hours=1)),  # no lag: nothing waits
        WaitingResults(TOPIC, 3, 4, None),  # could not be read: no claim
        WaitingResults(TOPIC, 4, 1, NOW - timedelta(minutes=9)),
    )
    (finding,) = findings(StatusFacts(now=NOW, waiting=waiting), LIMITS)
    assert finding.check == "sink_stalled"
    assert "6 results wait on novel-events.embeddings (partitions 0, 4)" in finding.problem
    assert (NOW - timedelta(minutes=9)).isoformat(timespec="seconds") in finding.problem
    assert "`scribe worker`" in finding.repair


def test_results_waiting_within_the_limit_are_a_sink_at_work() -> None:
    waiting = (WaitingResults(TOPIC, 0, 500, NOW - timedelta(seconds=299)),)
    assert _checks(StatusFacts(now=NOW, waiting=waiting)) == []


def test_every_finding_at_once() -> None:
    facts = StatusFacts(
        now=NOW,
        index=(IndexSample("c", 1, 2),),
        stale_pending=1,
        oldest_pending=OldestPending("n", "c", 1, NOW - timedelta(hours=1)),
        waiting=(WaitingResults(TOPIC, 0, 1, NOW - timedelta(hours=1)),),
    )
    assert _checks(facts) == ["index_rows", "pending_chapters", "sink_stalled"]


def _report() -> dict[str, Any]:
    return {
        "checked_at": NOW.isoformat(),
        "kafka": {
            "partitions": [],
            "results_waiting": [
                {"partition": 1, "lag": 3, "oldest_at": "2026-12-05T11:50:00+00:00"},
                {"partition": 2, "lag": 1, "oldest_at": None},
            ],
        },
        "ledger": {
            "counts": {"pending": 1},
            "stale_pending": 1,
            "oldest_pending": {
                "novel_id": "n",
                "chapter_id": "c",
                "version": 2,
                "since": "2026-12-05T11:00:00+00:00",
            },
        },
        "index": {
            "rows": 0,
            "samples": [
                {"collection": "x", "rows": 0, "expected_rows": 9},
                {"collection": "x", "rows": 0, "expected_rows": 9},
            ],
        },
    }


def test_the_facts_are_read_from_the_json_report() -> None:
    facts = facts_of(_report(), TOPIC)
    assert facts.now == NOW
    assert facts.index == (IndexSample("x", 0, 9), IndexSample("x", 0, 9))
    assert facts.stale_pending == 1
    assert facts.oldest_pending == OldestPending("n", "c", 2, NOW - timedelta(hours=1))
    assert facts.waiting == (
        WaitingResults(TOPIC, 1, 3, NOW - timedelta(minutes=10)),
        WaitingResults(TOPIC, 2, 1, None),
    )
    assert _checks(facts) == ["index_rows", "pending_chapters", "sink_stalled"]


def test_sections_with_errors_give_no_facts_and_their_error_is_the_problem() -> None:
    report = {
        "checked_at": NOW.isoformat(),
        "kafka": {"error": "KafkaConnectionError: away"},
        "ledger": {"error": "LedgerUnavailable: away"},
        "index": {"error": "VectorStoreError: away"},
    }
    assert facts_of(report, TOPIC) == StatusFacts(now=NOW)
    assert problems(report, None) == [
        "kafka: KafkaConnectionError: away",
        "ledger: LedgerUnavailable: away",
        "index: VectorStoreError: away",
    ]
