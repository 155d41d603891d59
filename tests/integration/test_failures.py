"""Failure handling as the original guide asks: notifications and zombie detection."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.processes import ManagedProcess
from tests.integration.harness import Stack, event, wait_for

pytestmark = pytest.mark.integration


def _automations(stack: Stack) -> list[dict[str, Any]]:
    return [a for a in stack.prefect("/automations/filter", {}) if a["name"].startswith("scribe:")]


def test_automations_are_created_once_and_read_back(stack: Stack) -> None:
    env = {"SCRIBE_FAILURE_WEBHOOK_URL": "http://127.0.0.1:9/scribe-hook"}
    for _ in range(2):  # idempotent: a second run updates, never duplicates
        done = stack.scribe("flows", "automations", env_extra=env)
        assert done.returncode == 0, done.stderr
    found = {a["name"]: a for a in _automations(stack)}
    deployment = stack.settings.deployment
    zombie = found[f"scribe: crash zombie runs of {deployment}"]
    failure = found[f"scribe: notify on failed runs of {deployment}"]
    assert len(found) == 2
    trigger = zombie["trigger"]
    assert trigger["posture"] == "Proactive"
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert "prefect.flow-run.heartbeat" in trigger["expect"]
    assert trigger["within"] == 3 * stack.settings.heartbeat_seconds
    assert trigger["match_related"]["prefect.resource.role"] == "deployment"
    assert zombie["actions"][0]["type"] == "change-flow-run-state"
    assert zombie["actions"][0]["state"] == "CRASHED"
    assert set(failure["trigger"]["expect"]) == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
    }
    action = failure["actions"][0]
    assert action["type"] == "send-notification"
    block = stack.prefect(f"/block_documents/{action['block_document_id']}", None, method="GET")
    assert block["data"]["url"] == "http://127.0.0.1:9/scribe-hook"


def test_a_flow_that_fails_publishes_a_failure_event_and_marks_the_chapter(stack: Stack) -> None:
    """The runner is swapped for one whose result limit no real chapter fits in."""
    stack.runner.stop()
    failing = ManagedProcess(
        "failing-runner",
        [sys.executable, "-m", "streams.cli", "flows", "serve"],
        stack.settings.data_dir / "logs" / "failing-runner.log",
        env={**stack.env, "SCRIBE_MAX_RESULT_BYTES": "3000"},
    )
    failing.start()
    novel = f"fail-{uuid.uuid4().hex[:6]}"
    try:
        text = "八戒吃了人参果。沙僧挑着担子。"  # one chunk: still a result over 3,000 bytes
        asyncio.run(
            stack.produce(
                [(novel.encode(), event("chapter.created", novel, "c1", 1, title="t", text=text))]
            )
        )

        def failed_run() -> dict[str, Any] | None:
            body = {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}}
            runs = stack.prefect("/flow_runs/filter", body)
            return next((r for r in runs if r["state_type"] == "FAILED"), None)

        run = wait_for(failed_run, 300, "the failed flow run", stack, interval=3)
    finally:
        failing.stop()
        stack.runner.start()

    async def failures() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            stack.settings.topic_failures,
            bootstrap_servers=stack.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got = await consumer.getmany(timeout_ms=3000)
            return [json.loads(m.value) for ms in got.values() for m in ms]
        finally:
            await consumer.stop()

    notes = wait_for(
        lambda: [f for f in asyncio.run(failures()) if f["novel_id"] == novel] or None,
        120,
        "chapter.processing_failed",
        stack,
        interval=2,
    )
    [note] = notes
    assert note["event_type"] == "chapter.processing_failed"
    assert (note["chapter_id"], note["version"], note["flow_run_id"]) == ("c1", 1, run["id"])
    assert "ResultTooLarge" in note["reason"] or "bytes" in note["reason"]

    def marked() -> dict[str, Any] | None:
        report = json.loads(stack.scribe("status", "--json").stdout)
        return next((f for f in report["ledger"]["failed"] if f["novel_id"] == novel), None)

    failed = wait_for(marked, 120, "the chapter failed in the ledger", stack, interval=2)
    assert failed["flow_run_id"] == run["id"] and failed["version"] == 1
    assert os.environ.get("SCRIBE_MAX_RESULT_BYTES") is None  # the stack itself is unchanged
