"""``scribe exporter``: what ``scribe status`` sees, as Prometheus gauges.

The worker and the runner export what they do (counters of events, runs, chunks, rows,
their own timings). What the whole deployment holds is not any one process's to count:
chapters pending or failed in the ledger, rows in the index against rows the ledger
promises, the DLQ's size, flow runs by state, results waiting for the sink. One exporter
reads them as ``scribe status`` does, every ``SCRIBE_EXPORTER_INTERVAL_SECONDS``, and
serves them on ``SCRIBE_EXPORTER_PORT`` (as kafka-exporter or postgres-exporter serve
what their service holds). The alert rules in ``compose/prometheus/alerts.yml`` read
both kinds.

:class:`StatusGauges` maps a report to gauges without I/O; :func:`export_forever` gathers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from streams.commands.status_checks import findings
from streams.commands.status_facts import facts_of
from streams.settings import Settings

log = logging.getLogger("scribe.exporter")

#: The sections of a status report, each ``scribe_status_up{section}`` 1 when it was read.
SECTIONS = ("kafka", "prefect", "ledger", "index")


class StatusGauges:
    """The exporter's gauges, in a registry of their own (one per exporter)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        self.up = gauge("scribe_status_up", "1 when the section was read", ("section",))
        self.lag = gauge(
            "scribe_group_lag",
            "Messages the workers' group has not consumed, per partition",
            ("topic", "partition"),
        )
        self.dlq = gauge("scribe_dlq_messages", "Messages in the dead-letter topic")
        self.runs = gauge(
            "scribe_flow_runs", "Flow runs of the deployment Prefect holds, by state", ("state",)
        )
        self.failed_hour = gauge(
            "scribe_flow_runs_failed_last_hour", "Runs failed or crashed in the last hour"
        )
        self.chapters = gauge("scribe_chapters", "Chapters in the ledger, by status", ("status",))
        self.stale = gauge(
            "scribe_chapters_stale_pending",
            "Chapters pending longer than SCRIBE_STATUS_PENDING_SECONDS",
        )
        self.oldest = gauge(
            "scribe_oldest_pending_age_seconds", "Age of the chapter pending longest (0: none)"
        )
        self.rows = gauge("scribe_index_rows", "Rows in the collection behind the alias")
        self.expected = gauge(
            "scribe_index_expected_rows", "Rows the ledger says the collection holds"
        )
        self.waiting = gauge(
            "scribe_results_oldest_wait_seconds",
            "Age of the oldest result the sink has not consumed (0: none waiting)",
        )
        self.findings = gauge(
            "scribe_status_findings", "Problems scribe status reports (each names its repair)"
        )
        self.last = gauge(
            "scribe_exporter_last_success_timestamp_seconds", "When a report was last read"
        )
        #: ``time.monotonic()`` of the last update (``None``: none yet).
        self.updated_at: float | None = None

    def fresh(self, max_age: float) -> bool:
        """Whether a report was read within ``max_age`` seconds (the exporter's health)."""
        return self.updated_at is not None and time.monotonic() - self.updated_at < max_age

    def update(self, report: dict[str, Any], findings_count: int, now: datetime) -> None:
        """Set every gauge from ``report`` (:func:`streams.commands.status.gather`);
        a section that carries an ``error`` keeps its gauges and reads 0 in ``up``."""
        parts = {section: report.get(section) or {"error": "missing"} for section in SECTIONS}
        for section, part in parts.items():
            self.up.labels(section).set(0 if "error" in part else 1)
        kafka, prefect, ledger, index = (parts[section] for section in SECTIONS)
        if "error" not in kafka:
            for p in kafka.get("partitions", []):
                self.lag.labels(p["topic"], str(p["partition"])).set(p["lag"])
            self.dlq.set(kafka.get("dlq_size", 0))
            ages = [
                (now - datetime.fromisoformat(w["oldest_at"])).total_seconds()
                for w in kafka.get("results_waiting", [])
                if w.get("oldest_at")
            ]
            self.waiting.set(max([0.0, *ages]))
        if "error" not in prefect:
            self.runs.clear()  # a state no run is in any more reads absent, not its last count
            for state, count in prefect.get("runs", {}).items():
                self.runs.labels(state).set(count)
            self.failed_hour.set(prefect.get("failed_last_hour", 0))
        if "error" not in ledger:
            self.chapters.clear()
            for status, count in ledger.get("counts", {}).items():
                self.chapters.labels(status).set(count)
            self.stale.set(ledger.get("stale_pending", 0))
            oldest = ledger.get("oldest_pending")
            since = datetime.fromisoformat(oldest["since"]) if oldest else now
            self.oldest.set(max(0.0, (now - since).total_seconds()))
        if "error" not in index:
            self.rows.set(index.get("rows", 0))
            self.expected.set(index.get("expected_rows", 0))
        self.findings.set(findings_count)
        self.last.set(now.timestamp())
        self.updated_at = time.monotonic()


async def sample(settings: Settings, gauges: StatusGauges) -> None:
    """Gather one status report and set the gauges from it."""
    from streams.commands.status import gather, limits

    report = await gather(settings)
    found = findings(facts_of(report, settings.topic_embeddings), limits(settings))
    gauges.update(report, len(found), datetime.fromisoformat(report["checked_at"]))


async def export_forever(settings: Settings, gauges: StatusGauges) -> None:
    """Sample every ``SCRIBE_EXPORTER_INTERVAL_SECONDS`` until cancelled; a failed sample
    is logged and the gauges keep their last values (``scribe_status_up`` says which)."""
    while True:
        began = time.monotonic()
        try:
            await sample(settings, gauges)
        except Exception as exc:  # a service away is what the gauges report, never a crash
            log.warning("status not sampled: %s: %s", type(exc).__name__, exc)
        elapsed = time.monotonic() - began
        await asyncio.sleep(max(1.0, settings.exporter_interval_seconds - elapsed))
