"""``scribe status``: lag, flow runs, ledger, index and DLQ in one health report.

The I/O lives here (and in :mod:`streams.commands.status_kafka`); what is unhealthy is
decided by the pure functions of :mod:`streams.commands.status_checks`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from streams import export_prefect_env
from streams.adapters.milvus.store import MilvusVectorStore
from streams.commands.status_checks import findings, problems
from streams.commands.status_facts import Limits, facts_of
from streams.commands.status_kafka import kafka_report
from streams.commands.status_view import load_previous, save
from streams.settings import Settings
from streams.wiring import open_ledger, open_live_ledger, vector_store

__all__ = ["check", "gather", "kafka_report", "limits"]

#: Pause before the index is counted again, when its first count was short.
CONFIRM_SECONDS = 2.0

RUN_STATES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED")


async def prefect_report(settings: Settings) -> dict[str, Any]:
    """Flow runs of the deployment by state; failures in the last hour."""
    export_prefect_env(settings)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(settings.deployment)
        by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))

        async def count(**state: Any) -> int:
            return int(
                await client.count_flow_runs(
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(**state)),
                    deployment_filter=by_deployment,
                )
            )

        states = {
            s.lower(): await count(type=FlowRunFilterStateType(any_=[StateType(s)]))
            for s in RUN_STATES
        }
        states["late"] = await count(name=FlowRunFilterStateName(any_=["Late"]))
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        failed_recent = int(
            await client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                    ),
                    start_time=FlowRunFilterStartTime(after_=hour_ago),
                ),
                deployment_filter=by_deployment,
            )
        )
    return {
        "deployment": settings.deployment,
        "ui": settings.prefect_ui_url,
        "runs": states,
        "failed_last_hour": failed_recent,
    }


async def ledger_report(settings: Settings, now: datetime) -> dict[str, Any]:
    """Chapters by status, the newest failures, and the chapters pending too long."""
    ledger = await open_live_ledger(settings)
    try:
        failed = await ledger.chapters("failed", 10)
        summary = await ledger.summary(now - timedelta(seconds=settings.status_pending_seconds))
        oldest = summary.oldest_pending
        return {
            "counts": await ledger.counts(),
            "failed": [
                {
                    "novel_id": f.novel_id,
                    "chapter_id": f.chapter_id,
                    "version": f.failed_version,
                    "flow_run_id": f.flow_run_id,
                    "error": f.error,
                }
                for f in failed
            ],
            "stale_pending": summary.stale_pending,
            "oldest_pending": None
            if oldest is None
            else {
                "novel_id": oldest.novel_id,
                "chapter_id": oldest.chapter_id,
                "version": oldest.latest_version,
                "since": (oldest.updated_at or now).isoformat(),
            },
        }
    finally:
        await ledger.close()


async def index_sample(settings: Settings, store: MilvusVectorStore) -> dict[str, Any]:
    """The collection behind the alias, its rows, then what its ledger scope says it holds
    (read after the rows: the sink writes the index first, the ledger second)."""
    info = await store.describe()
    ledger = await open_ledger(settings, info["collection"])
    try:
        summary = await ledger.summary(datetime.now(UTC))
    finally:
        await ledger.close()
    return {**info, "expected_rows": summary.indexed_rows}


async def index_report(settings: Settings) -> dict[str, Any]:
    """The collection behind the alias, its model, its row count and the rows its ledger
    says are indexed; a shortfall is sampled again after :data:`CONFIRM_SECONDS`."""
    store = vector_store(settings)
    try:
        samples = [await index_sample(settings, store)]
        if samples[0]["expected_rows"] > samples[0]["rows"]:
            await asyncio.sleep(CONFIRM_SECONDS)
            samples.append(await index_sample(settings, store))
    finally:
        await store.close()
    last = samples[-1]
    return {
        "alias": settings.milvus_collection,
        **last,
        "missing_rows": max(0, last["expected_rows"] - last["rows"]),
        "samples": [{k: s[k] for k in ("collection", "rows", "expected_rows")} for s in samples],
    }


async def gather(settings: Settings) -> dict[str, Any]:
    """Every section; a section whose service is down carries an ``error``."""
    now = datetime.now(UTC)
    report: dict[str, Any] = {"checked_at": now.isoformat()}
    for name, part in (
        ("kafka", partial(kafka_report, waited=True)),
        ("prefect", prefect_report),
        ("ledger", partial(ledger_report, now=now)),
        ("index", index_report),
    ):
        try:
            report[name] = await part(settings)
        except Exception as exc:  # a down service is a finding, not a crash
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def limits(settings: Settings) -> Limits:
    """The thresholds of :func:`~streams.commands.status_checks.findings`."""
    return Limits(settings.status_pending_seconds, settings.status_result_wait_seconds)


async def check(settings: Settings) -> dict[str, Any]:
    """Gather a report, judge it (against the previous one too), keep it for the next
    call; the report carries ``findings`` (with their repairs) and every ``problems``."""
    report = await gather(settings)
    found = findings(facts_of(report, settings.topic_embeddings), limits(settings))
    issues = problems(report, load_previous(settings)) + [f.line() for f in found]
    save(settings, report)
    report["findings"] = [f.as_json() for f in found]
    report["problems"] = issues
    return report
