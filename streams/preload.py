"""Imports a flow-running process makes at start-up, before any run (and its threads) begin.

pymilvus configures logging when it is first imported (``logging.config.dictConfig``),
which flushes every existing handler while it holds the logging module's lock. Prefect's
API log handler flushes by waiting for its log worker, and Prefect's engine threads take
that worker's lock and then the logging lock: a run whose first index lookup imported
pymilvus from a worker thread deadlocked its warm runner for good (every run of that runner
stayed Running; seen in the edit benchmark on 2026-12-02). Imported here, on the main
thread before any run starts, the handler flush has nothing to wait for.
"""

from __future__ import annotations


def preload_pymilvus() -> None:
    """Import pymilvus now (idempotent: later imports reuse the module)."""
    import pymilvus  # noqa: F401
