"""What the agents report for metrics, behind a small Protocol (no-op by default)."""

from __future__ import annotations

from typing import Protocol


class Telemetry(Protocol):
    """Counters and timings the agents feed; the wiring layer exports them."""

    def event_consumed(self, event_type: str) -> None:
        """A valid input event of ``event_type`` was handled."""

    def dead_lettered(self, error_class: str) -> None:
        """A message was parked with an error of ``error_class``."""

    def run_submitted(self, seconds: float) -> None:
        """Prefect accepted a flow run after ``seconds``."""

    def result_applied(self, kind: str, rows: int, latency_seconds: float | None) -> None:
        """A result changed the index (``rows`` written); latency from the input event."""

    def result_skipped(self, kind: str) -> None:
        """A result was ignored because something newer won."""

    def chapter_failed(self) -> None:
        """A chapter's processing failed for good."""


class NoTelemetry:
    """Reports nothing."""

    def event_consumed(self, event_type: str) -> None:
        """Nothing."""

    def dead_lettered(self, error_class: str) -> None:
        """Nothing."""

    def run_submitted(self, seconds: float) -> None:
        """Nothing."""

    def result_applied(self, kind: str, rows: int, latency_seconds: float | None) -> None:
        """Nothing."""

    def result_skipped(self, kind: str) -> None:
        """Nothing."""

    def chapter_failed(self) -> None:
        """Nothing."""
