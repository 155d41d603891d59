"""What makes ``scribe status`` unhealthy: pure decisions over facts gathered elsewhere.

:func:`problems` judges the report's sections (services, offsets, failures, the DLQ);
:func:`findings` judges whether the index and the stream keep their promise, and names
the command that repairs each finding. Nothing here does I/O or reads the clock: the
facts (:mod:`streams.commands.status_facts`) carry the time they were gathered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streams.commands.status_facts import IndexSample, Limits, StatusFacts

#: The repair of an index that lacks rows: a full resink rebuilds a new collection from
#: the results topic alone and moves the alias (an in-place one would skip every result
#: the ledger already calls applied).
RESINK = "scribe replay --resink"


@dataclass(frozen=True)
class Finding:
    """One reason the index or the stream is not as the ledger says, and its repair."""

    check: str
    problem: str
    repair: str

    def line(self) -> str:
        """The finding as one line of ``problems``."""
        return f"{self.problem}; repair: {self.repair}"

    def as_json(self) -> dict[str, str]:
        """The ``--json`` form."""
        return asdict(self)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def index_finding(samples: tuple[IndexSample, ...]) -> Finding | None:
    """Rows missing from the index, in *every* sample: the sink writes the index before
    the ledger, so one sample may catch a shrinking chapter between the two writes; a
    second one, a moment later, must confirm the shortfall."""
    if not samples or any(s.missing == 0 for s in samples):
        return None
    last = samples[-1]
    return Finding(
        "index_rows",
        f"the index {last.collection} holds {last.rows} rows, the ledger says "
        f"{last.expected_rows} are indexed ({last.missing} missing)",
        f"`{RESINK}` (a full one: no --novel, no --from) rebuilds it from the results topic",
    )


def pending_finding(facts: StatusFacts, limits: Limits) -> Finding | None:
    """Chapters pending for longer than ``limits.pending_seconds``."""
    oldest = facts.oldest_pending
    if oldest is None or (facts.now - oldest.since).total_seconds() <= limits.pending_seconds:
        return None
    count = max(facts.stale_pending, 1)
    return Finding(
        "pending_chapters",
        f"{count} chapter(s) pending for over {_minutes(limits.pending_seconds)} (oldest: "
        f"{oldest.novel_id}/{oldest.chapter_id}@v{oldest.version} since "
        f"{oldest.since.isoformat(timespec='seconds')})",
        f"look at its flow run in Prefect, then `scribe replay --novel {oldest.novel_id}` "
        "runs the novel's flows again",
    )


def sink_finding(facts: StatusFacts, limits: Limits) -> Finding | None:
    """Results waiting, unconsumed, for longer than ``limits.result_wait_seconds``.

    The age of the oldest result the worker has not committed is the time the sink has
    not got past it: one read, measured by Kafka's own timestamps, whatever the interval
    between two ``scribe status`` calls.
    """
    stuck = [
        w
        for w in facts.waiting
        if w.lag > 0
        and w.oldest_at is not None
        and (facts.now - w.oldest_at).total_seconds() > limits.result_wait_seconds
    ]
    if not stuck:
        return None
    oldest = min(w.oldest_at for w in stuck if w.oldest_at is not None)
    partitions = ", ".join(str(w.partition) for w in stuck)
    return Finding(
        "sink_stalled",
        f"{sum(w.lag for w in stuck)} results wait on {stuck[0].topic} (partitions "
        f"{partitions}), the oldest since {oldest.isoformat(timespec='seconds')}: the "
        f"sink has not applied them for over {_minutes(limits.result_wait_seconds)}",
        "read the worker's log and /health, make Milvus and the ledger reachable, and "
        "restart `scribe worker`: it goes on from its committed offset",
    )


def findings(facts: StatusFacts, limits: Limits) -> list[Finding]:
    """The index, pending chapters and the sink, judged (see each ``*_finding``)."""
    found = (
        index_finding(facts.index),
        pending_finding(facts, limits),
        sink_finding(facts, limits),
    )
    return [f for f in found if f is not None]


def problems(report: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """What makes the report unhealthy (pure); compares with the previous report if any."""
    found = [
        f"{name}: {report[name]['error']}"
        for name in ("kafka", "prefect", "ledger", "index")
        if "error" in report.get(name, {})
    ]
    kafka = report.get("kafka", {})
    before = {
        (p["topic"], p["partition"]): p
        for p in (previous or {}).get("kafka", {}).get("partitions", [])
    }
    for p in kafka.get("partitions", []):
        if p["end"] > 0 and p["committed"] is None:
            found.append(f"{p['topic']}[{p['partition']}] has messages but no committed offset")
        old = before.get((p["topic"], p["partition"]))
        if old and p["lag"] > 0 and old["lag"] > 0 and p["committed"] == old["committed"]:
            found.append(
                f"{p['topic']}[{p['partition']}] is not being consumed "
                f"(lag {p['lag']}, offset unchanged)"
            )
    if previous and kafka.get("dlq_size", 0) > previous.get("kafka", {}).get("dlq_size", 0):
        found.append(f"dead-letter topic grew to {kafka['dlq_size']}")
    if report.get("prefect", {}).get("failed_last_hour", 0):
        found.append(f"{report['prefect']['failed_last_hour']} failed flow runs in the last hour")
    if report.get("ledger", {}).get("counts", {}).get("failed", 0):
        found.append(f"{report['ledger']['counts']['failed']} chapters failed")
    return found
