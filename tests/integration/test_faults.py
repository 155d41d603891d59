"""Crashes and outages on real services: the index must converge to exactly the log.

Chapters here are short (one chunk each) so that many flow runs fit in the CI budget;
each test asserts the final state exactly: every live chapter once at its newest version
with all of its chunks, no duplicate ids, nothing of deleted chapters.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import Any

import httpx
import pytest

from streams.embedded.processes import ManagedProcess
from tests.integration.harness import (
    Stack,
    converged,
    event,
    not_pending,
    restart_service,
    service,
    wait_for,
)

pytestmark = pytest.mark.integration


def _text(chapter: int, version: int) -> str:
    return f"第{chapter}章第{version}稿。悟空驾筋斗云，一去十万八千里，此乃第{chapter}章之事。"


def _scenario(novel: str, chapters: int, updated: range, deleted: range):  # type: ignore[no-untyped-def]
    """Create every chapter, update some to v2, delete others at v2: log order per novel."""
    messages = []
    expected: dict[str, tuple[int, int]] = {}
    for i in range(chapters):
        text = _text(i, 1)
        messages.append(
            (
                novel.encode(),
                event("chapter.created", novel, f"c{i}", 1, title=f"第{i}章", text=text),
            )
        )
        expected[f"c{i}"] = (1, 1)
    for i in updated:
        messages.append(
            (
                novel.encode(),
                event("chapter.updated", novel, f"c{i}", 2, title=f"第{i}章", text=_text(i, 2)),
            )
        )
        expected[f"c{i}"] = (2, 1)
    for i in deleted:
        messages.append((novel.encode(), event("chapter.deleted", novel, f"c{i}", 2)))
        del expected[f"c{i}"]
    return messages, expected


def test_killing_worker_and_runner_repeatedly_loses_and_duplicates_nothing(stack: Stack) -> None:
    """Three kill -9 cycles of the worker and the runner (its flow processes orphaned),
    each while chapters are still on their way (asserted: a kill after the work is done
    proves nothing). 30 one-chunk chapters keep runs in flight across the three cycles
    (54 did too, at twice the suite's CPU for this test)."""
    novel = f"crash-{uuid.uuid4().hex[:6]}"
    messages, expected = _scenario(novel, 30, range(0, 6), range(6, 9))
    asyncio.run(stack.produce(messages))
    rng = random.Random(7)
    for cycle in range(3):
        time.sleep(rng.uniform(4, 10))
        assert converged(stack, novel, expected) is None, f"cycle {cycle}: nothing left"
        stack.worker.kill()  # SIGKILL, no clean-up
        stack.runner.kill()
        time.sleep(rng.uniform(0.5, 2))
        stack.worker.start()
        stack.runner.start()
        print(f"cycle {cycle}: killed and restarted worker and runner")
    wait_for(
        lambda: converged(stack, novel, expected),
        900,
        "30 chapters converged after kill -9 cycles",
        stack,
        interval=5,
    )


@pytest.mark.parametrize(
    "name,down", [("prefect", 35), ("milvus", 20), ("kafka", 15), ("postgres", 15)]
)
def test_a_service_outage_mid_stream_loses_nothing(stack: Stack, name: str, down: int) -> None:
    novel = f"{name}-down-{uuid.uuid4().hex[:6]}"
    messages, expected = _scenario(novel, 8, range(0, 2), range(2, 4))
    asyncio.run(stack.produce(messages))
    time.sleep(3)
    assert converged(stack, novel, expected) is None, "the outage must come mid-stream"
    restart_service(stack, name, down)
    wait_for(
        lambda: converged(stack, novel, expected),
        600,
        f"8 chapters converged after a {down}s {name} outage",
        stack,
        interval=5,
    )


def test_a_runner_started_while_prefect_is_down_waits_for_it(stack: Stack) -> None:
    """Chaos campaign, seed 106: a runner restarted while Prefect could not answer (its
    database paused) exited 1 at its start instead of waiting. A supervisor would start it
    again, into a loop of crashes for as long as the outage lasts."""
    novel = f"late-prefect-{uuid.uuid4().hex[:6]}"
    messages, expected = _scenario(novel, 3, range(0, 1), range(1, 2))
    prefect = service(stack, "prefect")
    stack.runner.stop()
    prefect.stop()
    try:
        stack.runner.start()
        time.sleep(15)  # it tries to deploy, fails, backs off
        stack.runner.check_alive()
    finally:
        restart_service(stack, "prefect", 0)
    asyncio.run(stack.produce(messages))
    wait_for(
        lambda: converged(stack, novel, expected),
        600,
        "3 chapters converged with the runner that waited for Prefect",
        stack,
        interval=5,
    )


def test_a_worker_waiting_for_milvus_at_start_survives_a_rebalance(stack: Stack) -> None:
    """Chaos campaign (issue 19), seed 406: a worker restarted while a service was away
    waited in its start-up for Milvus when the group rebalanced; Faust cancelled the
    chapter agent's actors of the revoked partitions before they iterated their stream,
    restarted them for those partitions, and the next assignment failed on Faust's
    ``assert topic.active_partitions.issubset(assigned)``: the worker exited 1."""
    milvus = service(stack, "milvus")
    logs = stack.settings.data_dir / "logs"
    env = {**stack.env, "SCRIBE_WORKER_METRICS_PORT": "0"}
    extra = [
        ManagedProcess(
            f"worker-{name}",
            [sys.executable, "-m", "streams.cli", "worker"],
            logs / f"worker-{name}.log",
            env=env,
        )
        for name in ("waiting", "joining")
    ]
    revoked = "Stopping actor for revoked partition"
    waiting, joining = extra
    milvus.stop()
    stack.worker.stop()  # the waiting worker takes every partition, the joining one some
    try:
        waiting.start()
        wait_for(
            lambda: "Starting actor for partitions" in waiting.tail(400),
            120,
            "the waiting worker assigned partitions",
        )
        joining.start()  # a rebalance moves partitions the first waits on to the second
        wait_for(lambda: revoked in waiting.tail(5000), 120, "a partition revoked")
        time.sleep(10)
        assert waiting.running, waiting.tail(300)
    finally:
        restart_service(stack, "milvus", 0)
        for proc in extra:
            proc.stop()
        stack.worker.start()
    stack.check_alive()


#: Seconds the broker stays away once a run is reading its event: a broker restart.
KAFKA_AWAY_SECONDS = 60


def _runs_of(stack: Stack, novel: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = stack.prefect(
        "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}}
    )
    return runs


def _deployment(stack: Stack) -> dict[str, Any] | None:
    """The deployment, once the runner has created it (``None`` before)."""
    try:
        found: dict[str, Any] = stack.prefect(
            f"/deployments/name/{stack.settings.deployment}", None, "GET"
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return found


def _ledger_failed(stack: Stack, novel: str) -> dict[str, Any] | None:
    report = json.loads(stack.scribe("status", "--json").stdout)
    return next((f for f in report["ledger"]["failed"] if f["novel_id"] == novel), None)


def test_a_kafka_restart_under_a_reading_run_strands_no_chapter(stack: Stack) -> None:
    """Issue 19, hole 2: with the broker refusing connections for a minute, a run's event
    read retried ~50 s and failed, its failure hook could not publish ``chapter.failed``
    either, and nothing reported it again: the chapter stayed pending for good.

    The outage is deterministic: both runs are submitted while Kafka is up and the runner
    is stopped; the runner starts once the broker is down. One run is a real chapter (a
    service away is "try later": it must end indexed); the other fails for good without
    needing Kafka (no event position), so only a report made after the outage can tell.
    """
    from streams.embedded.processes import port_open

    tag = uuid.uuid4().hex[:6]
    novel, doomed = f"kafka-away-{tag}", f"kafka-away-doomed-{tag}"
    body = event("chapter.created", novel, "c1", 1, title="第1章", text=_text(1, 1))
    kafka = service(stack, "kafka")
    deployment = wait_for(lambda: _deployment(stack), 180, "the deployment", stack, interval=2)
    stack.runner.stop()
    try:
        asyncio.run(stack.produce([(novel.encode(), body)]))
        wait_for(lambda: _runs_of(stack, novel), 300, "the chapter's flow run", interval=2)
        identity = {"event_id": str(uuid.uuid4()), "chapter_id": "c1", "version": 1}
        stack.prefect(
            f"/deployments/{deployment['id']}/create_flow_run",
            {"parameters": {**identity, "novel_id": doomed}, "tags": [f"novel:{doomed}"]},
        )
        kafka.stop()
        stack.runner.start()
        wait_for(
            lambda: any(r["state_type"] == "RUNNING" for r in _runs_of(stack, novel)),
            180,
            "the chapter's run reading its event",
            stack,
        )
        time.sleep(KAFKA_AWAY_SECONDS)
    finally:
        if not kafka.running:
            kafka.start()
        wait_for(lambda: port_open(stack.settings.kafka_port), 180, "kafka back up")
    wait_for(
        lambda: converged(stack, novel, {"c1": (1, 1)}),
        300,
        "the chapter indexed after the broker restart",
        stack,
        interval=5,
    )
    assert not_pending(stack, novel, "c1")
    failed = wait_for(
        lambda: _ledger_failed(stack, doomed), 300, "the doomed chapter reported", stack, 5
    )
    [run] = _runs_of(stack, doomed)
    assert failed["flow_run_id"] == run["id"] and run["state_type"] == "FAILED", run
    assert "scribe:reported" in run["tags"], run["tags"]
