"""Failure handling as the original guide asks: notifications and zombie detection."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from streams.adapters.kafka.client import admin_client
from streams.commands.novel_text import split_chapters
from streams.embedded.processes import ManagedProcess
from tests.integration.harness import Stack, converged, event, wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "streams" / "samples" / "xiyouji-1-10.txt"

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
    assert set(trigger["after"]) == {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}
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


@contextmanager
def swapped_runner(stack: Stack, name: str, env: dict[str, str], *mode: str) -> Iterator[None]:
    """The stack's runner replaced, for the block, by one with ``env`` on top."""
    stack.runner.stop()
    runner = ManagedProcess(
        name,
        [sys.executable, "-m", "streams.cli", "flows", "serve", *mode],
        stack.settings.data_dir / "logs" / f"{name}.log",
        env={**stack.env, **env},
    )
    runner.start()
    try:
        yield
    finally:
        runner.stop()
        stack.runner.start()


def final_run_of(stack: Stack, novel: str) -> dict[str, Any] | None:
    """The novel's flow run once it is FAILED."""
    body = {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}}
    runs = stack.prefect("/flow_runs/filter", body)
    return next((r for r in runs if r["state_type"] == "FAILED"), None)


def failure_notes(stack: Stack, novel: str) -> list[dict[str, Any]]:
    """``chapter.processing_failed`` notes of the novel on the failures topic."""

    async def read() -> list[dict[str, Any]]:
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

    notes: list[dict[str, Any]] = wait_for(
        lambda: [f for f in asyncio.run(read()) if f["novel_id"] == novel] or None,
        120,
        "chapter.processing_failed",
        stack,
        interval=2,
    )
    return notes


def ledger_failure(stack: Stack, novel: str) -> dict[str, Any]:
    """The novel's entry among the ledger's failed chapters (``scribe status --json``)."""

    def marked() -> dict[str, Any] | None:
        report = json.loads(stack.scribe("status", "--json").stdout)
        return next((f for f in report["ledger"]["failed"] if f["novel_id"] == novel), None)

    failed: dict[str, Any] = wait_for(
        marked, 120, "the chapter failed in the ledger", stack, interval=2
    )
    return failed


def test_a_flow_that_fails_publishes_a_failure_event_and_marks_the_chapter(stack: Stack) -> None:
    """The runner is swapped for one whose result limit no real chapter fits in."""
    novel = f"fail-{uuid.uuid4().hex[:6]}"
    with swapped_runner(stack, "failing-runner", {"SCRIBE_MAX_RESULT_BYTES": "1200"}):
        text = "八戒吃了人参果。沙僧挑着担子。"  # one chunk: over 1,200 bytes
        asyncio.run(
            stack.produce(
                [(novel.encode(), event("chapter.created", novel, "c1", 1, title="t", text=text))]
            )
        )
        run = wait_for(
            lambda: final_run_of(stack, novel), 300, "the failed flow run", stack, interval=3
        )
    [note] = failure_notes(stack, novel)
    assert note["event_type"] == "chapter.processing_failed"
    assert (note["chapter_id"], note["version"], note["flow_run_id"]) == ("c1", 1, run["id"])
    assert "ResultTooLarge" in note["reason"] or "bytes" in note["reason"]
    failed = ledger_failure(stack, novel)
    assert failed["flow_run_id"] == run["id"] and failed["version"] == 1
    assert os.environ.get("SCRIBE_MAX_RESULT_BYTES") is None  # the stack itself is unchanged


def test_an_embed_that_times_out_is_retried_then_fails_visibly(stack: Stack) -> None:
    """A real chapter with the real model against a 1 s embed timeout (warm runner).

    The embed task times out on every attempt: the task retries (3 attempts), the flow
    retries once, then the run ends Failed in Prefect, the platform gets
    ``chapter.processing_failed`` and the ledger marks the chapter failed. Nothing hangs.
    """
    novel = f"slow-{uuid.uuid4().hex[:6]}"
    chapter = split_chapters(SAMPLE.read_text(encoding="utf-8"))[0]  # ~25 chunks: ~10 s here
    env = {"SCRIBE_EMBED_TIMEOUT_SECONDS": "1"}
    with swapped_runner(stack, "timeout-runner", env, "--warm"):
        produced = time.monotonic()
        body = event("chapter.created", novel, "c1", 1, title=chapter.title, text=chapter.text)
        asyncio.run(stack.produce([(novel.encode(), body)]))
        run = wait_for(
            lambda: final_run_of(stack, novel), 300, "the timed-out flow run", stack, interval=3
        )
        took = time.monotonic() - produced
    assert run["run_count"] == 2, run  # the flow's own retry ran
    assert "timed out" in (run["state"]["message"] or "").lower(), run["state"]
    tasks = stack.prefect("/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    embeds = [t for t in tasks if t["name"].startswith("embed")]
    assert embeds, tasks
    assert all(t["state_name"] == "TimedOut" for t in embeds), [t["state_name"] for t in embeds]
    assert sum(t["run_count"] for t in embeds) >= 3, embeds  # the task's retries ran too
    assert took < 240, took  # retries and delays, never a hang
    [note] = failure_notes(stack, novel)
    assert (note["chapter_id"], note["version"], note["flow_run_id"]) == ("c1", 1, run["id"])
    assert "timed out" in note["reason"].lower(), note["reason"]
    failed = ledger_failure(stack, novel)
    assert failed["flow_run_id"] == run["id"] and failed["version"] == 1


def test_a_process_worker_run_that_cannot_reach_kafka_is_tried_later_not_crashed(
    stack: Stack,
) -> None:
    """Defect 29: under Prefect's process worker, a run that ended ``AwaitingRetry`` (its
    event unreadable: Kafka away) exited 1 in ``python -m prefect.engine`` (``UnfinishedRun``)
    and was recorded Crashed, so each try-later counted as a crash. The runner here reaches
    no broker; the run must be tried later twice with no Crashed state in between, then
    indexed once a runner that reaches Kafka takes it."""
    novel = f"kafka-less-{uuid.uuid4().hex[:6]}"
    body = event("chapter.created", novel, "c1", 1, title="第1章", text="悟空翻了一个筋斗。")
    away = {"SCRIBE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}  # nothing listens there

    def states() -> list[dict[str, Any]]:
        runs = stack.prefect(
            "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}}
        )
        if not runs:
            return []
        found: list[dict[str, Any]] = stack.prefect(
            f"/flow_run_states/?flow_run_id={runs[0]['id']}", None, "GET"
        )
        return found

    def tried_later_twice() -> list[dict[str, Any]] | None:
        found = states()
        return found if sum(s["name"] == "AwaitingRetry" for s in found) >= 2 else None

    with swapped_runner(stack, "kafka-less-runner", away):
        asyncio.run(stack.produce([(novel.encode(), body)]))
        history = wait_for(tried_later_twice, 300, "two tries later", stack, interval=3)
    assert not [s for s in history if s["type"] == "CRASHED"], [s["name"] for s in history]
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "indexed", stack, 5)


def _found(stack: Stack, path: str) -> Any:
    """The resource at ``path`` of Prefect's API, ``None`` while it does not exist."""
    try:
        return stack.prefect(path, None, "GET")
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


async def _put_aside(stack: Stack, topic: str, key: str, value: bytes) -> dict[str, Any]:
    """Write one event to a topic of its own (no worker reads it); return its position."""
    async with admin_client(stack.kafka) as admin:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    producer = await stack.start_producer()
    try:
        sent = await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()
    return {"topic": topic, "partition": sent.partition, "offset": sent.offset}


def _aside_run(stack: Stack, novel: str, text: str) -> tuple[dict[str, Any], str]:
    """Parameters of a run for ``novel``/c1@v1 whose event lies in a topic of its own (so
    the worker submits no run for it), and the deployment's id."""
    body = event("chapter.created", novel, "c1", 1, title="t", text=text)
    source = asyncio.run(_put_aside(stack, f"aside-{uuid.uuid4().hex[:8]}", novel, body))
    params = {
        "source": source,
        "event_id": json.loads(body)["event_id"],
        "novel_id": novel,
        "chapter_id": "c1",
        "version": 1,
    }
    path = f"/deployments/name/{stack.settings.deployment}"
    deployment = wait_for(lambda: _found(stack, path), 180, "the deployment", stack, interval=2)
    return params, str(deployment["id"])


def test_a_run_that_crashed_on_every_attempt_is_reported_by_the_watchdog(stack: Stack) -> None:
    """Chaos run, defect 2 (seed 12): a run whose attempts all crashed (killed with its
    process, or before its flow body started) never runs a hook of its own, so its chapter
    stayed pending: not failed in the ledger, no notice, nothing to redrive. The runners'
    watchdog now reports the last crash like a failure and sets the run Failed."""
    novel = f"crashed-{uuid.uuid4().hex[:6]}"
    params, deployment = _aside_run(stack, novel, "悟空翻了个筋斗。")
    stack.runner.stop()  # its watchdog would reschedule the run between the crashes below
    try:
        run = stack.prefect(
            f"/deployments/{deployment}/create_flow_run",
            {"parameters": params, "tags": [f"novel:{novel}"], "state": {"type": "PENDING"}},
        )
        for state in ("CRASHED", "PENDING", "CRASHED", "PENDING", "CRASHED"):
            stack.prefect(
                f"/flow_runs/{run['id']}/set_state", {"state": {"type": state}, "force": True}
            )
    finally:
        stack.runner.start()
    final = wait_for(lambda: final_run_of(stack, novel), 180, "the reported run", stack, interval=3)
    assert final["id"] == run["id"] and "reported" in final["state"]["message"], final["state"]
    assert final["run_count"] == 0  # never started: reported by the watchdog, not a hook
    [note] = failure_notes(stack, novel)
    assert (note["chapter_id"], note["version"], note["flow_run_id"]) == ("c1", 1, run["id"])
    assert "crashed on all 3 attempts" in note["reason"], note["reason"]
    failed = ledger_failure(stack, novel)
    assert failed["flow_run_id"] == run["id"] and failed["version"] == 1
    out = stack.scribe("dlq", "list", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    [letter] = [p for p in json.loads(out.stdout) if p.get("flow_run_id") == run["id"]]
    assert letter["retriable"] and letter["key"] == novel, letter


def test_a_run_that_goes_silent_before_its_first_heartbeat_is_crashed(stack: Stack) -> None:
    """Chaos run, defect 4 (seed 104): a run killed before its first heartbeat stayed
    RUNNING forever, because the zombie automation armed only on a heartbeat. It arms on
    Running too: a run set Running that never beats is Crashed within three beats (90 s),
    then rescheduled by the watchdog and run to completion, even when a runner starts in
    between (defect 6).
    The owner is a bare pid, which no watchdog judges: only the automation can find it
    (as for a run of Prefect's process worker)."""
    novel = f"silent-{uuid.uuid4().hex[:6]}"
    params, deployment = _aside_run(stack, novel, "八戒睡着了。")
    run = stack.prefect(
        f"/deployments/{deployment}/create_flow_run",
        {"parameters": params, "tags": [f"novel:{novel}"], "state": {"type": "PENDING"}},
    )
    owner = {"infrastructure_pid": "4194999"}  # a bare pid: no watchdog judges it
    api = stack.settings.prefect_url
    httpx.patch(f"{api}/flow_runs/{run['id']}", json=owner, timeout=30).raise_for_status()
    stack.prefect(f"/flow_runs/{run['id']}/set_state", {"state": {"type": "RUNNING"}})
    went_running = time.monotonic()
    # What every runner start does (a restart after kill -9, a deploy): it used to update
    # the automation, which gave its trigger a new id and dropped the window of every run
    # in flight, so this run was never crashed (chaos campaign, seed 104).
    time.sleep(3)
    done = stack.scribe("flows", "automations")
    assert done.returncode == 0, done.stderr

    def crashed() -> dict[str, Any] | None:
        states = stack.prefect(f"/flow_run_states/?flow_run_id={run['id']}", None, "GET")
        return next((s for s in states if s["type"] == "CRASHED"), None)

    state = wait_for(crashed, 240, "the automation's Crashed state", stack, interval=3)
    assert "no heartbeat" in (state["message"] or ""), state
    assert time.monotonic() - went_running >= 80  # not before the window (3 x 30 s)

    def completed() -> dict[str, Any] | None:  # rescheduled by the watchdog, then run
        found: dict[str, Any] = stack.prefect(f"/flow_runs/{run['id']}", None, "GET")
        return found if found["state_type"] == "COMPLETED" else None

    wait_for(completed, 180, "the crashed run rescheduled and completed", stack, interval=3)
