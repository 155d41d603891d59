"""``scribe status``: lag, flow runs, ledger, index and DLQ in one health report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.adapters.kafka.client import admin_client, client_config, partitions_of
from streams.settings import Settings
from streams.wiring import apply_prefect_env, open_live_ledger, vector_store

RUN_STATES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED")


async def kafka_report(settings: Settings) -> dict[str, Any]:
    """Committed and end offsets per partition of the worker's group; DLQ size."""
    async with admin_client(settings) as admin:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    consumer = AIOKafkaConsumer(**client_config(settings), group_id=None)
    await consumer.start()
    try:
        partitions: list[dict[str, Any]] = []
        for topic in (settings.topic_events, settings.topic_embeddings):
            tps = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
            ends = await consumer.end_offsets(tps) if tps else {}
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                partitions.append(
                    {
                        "topic": topic,
                        "partition": tp.partition,
                        "committed": offset,
                        "end": ends[tp],
                        "lag": ends[tp] - (offset or 0),
                    }
                )
        dlq = [
            TopicPartition(settings.topic_dlq, p)
            for p in await partitions_of(settings, settings.topic_dlq)
        ]
        dlq_size = 0
        if dlq:
            ends, starts = await consumer.end_offsets(dlq), await consumer.beginning_offsets(dlq)
            dlq_size = sum(ends[tp] - starts[tp] for tp in dlq)
        return {"group": settings.app_id, "partitions": partitions, "dlq_size": dlq_size}
    finally:
        await consumer.stop()


async def prefect_report(settings: Settings) -> dict[str, Any]:
    """Flow runs of the deployment by state; failures in the last hour."""
    apply_prefect_env(settings)
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


async def ledger_report(settings: Settings) -> dict[str, Any]:
    """Chapters by status and the newest failures."""
    ledger = await open_live_ledger(settings)
    try:
        failed = await ledger.chapters("failed", 10)
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
        }
    finally:
        await ledger.close()


async def index_report(settings: Settings) -> dict[str, Any]:
    """The collection behind the alias, its model and row count."""
    store = vector_store(settings)
    try:
        info = await store.describe()
        return {"alias": settings.milvus_collection, **info}
    finally:
        await store.close()


async def gather(settings: Settings) -> dict[str, Any]:
    """Every section; a section whose service is down carries an ``error``."""
    report: dict[str, Any] = {"checked_at": datetime.now(UTC).isoformat()}
    for name, part in (
        ("kafka", kafka_report),
        ("prefect", prefect_report),
        ("ledger", ledger_report),
        ("index", index_report),
    ):
        try:
            report[name] = await part(settings)
        except Exception as exc:  # a down service is a finding, not a crash
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


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


def load_previous(settings: Settings) -> dict[str, Any] | None:
    """The last report written by ``scribe status`` in this data dir."""
    path = settings.data_dir / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def save(settings: Settings, report: dict[str, Any]) -> None:
    """Keep the report for the next comparison."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "status.json").write_text(json.dumps(report))


def render(report: dict[str, Any], console: Any) -> None:
    """Human-readable tables of a report."""
    from rich.table import Table

    kafka = report.get("kafka", {})
    table = Table(
        "topic", "partition", "committed", "end", "lag", title=f"group {kafka.get('group')}"
    )
    for p in kafka.get("partitions", []):
        table.add_row(
            p["topic"], str(p["partition"]), str(p["committed"]), str(p["end"]), str(p["lag"])
        )
    console.print(table)
    console.print(f"dead letters: {kafka.get('dlq_size', '?')}")
    prefect = report.get("prefect", {})
    console.print(
        f"flow runs of {prefect.get('deployment')}: {prefect.get('runs')} "
        f"(failed in the last hour: {prefect.get('failed_last_hour')})"
    )
    ledger = report.get("ledger", {})
    console.print(f"chapters: {ledger.get('counts')}")
    for f in ledger.get("failed", []):
        console.print(
            f"  failed {f['novel_id']}/{f['chapter_id']}@v{f['version']} "
            f"run {f['flow_run_id']}: {f['error']}"
        )
    console.print(f"index: {report.get('index')}")
    for name in ("kafka", "prefect", "ledger", "index"):
        if "error" in report.get(name, {}):
            console.print(f"[red]{name}: {report[name]['error']}")
    issues = report.get("problems", [])
    console.print("[green]healthy" if not issues else "[red]unhealthy:\n  " + "\n  ".join(issues))
