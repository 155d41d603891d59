"""The warm runner on real services: runs look like standard ones; a killed runner's runs
do not stay Running."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from typing import Any

import httpx
import pytest

from streams.embedded.processes import ManagedProcess, free_port
from tests.integration.harness import (
    Stack,
    converged,
    event,
    index_of,
    restart_service,
    wait_for,
)

pytestmark = pytest.mark.integration


def _runs(stack: Stack, novel: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"tags": {"all_": [f"novel:{novel}"]}}, "limit": 200}
    return list(stack.prefect("/flow_runs/filter", body))


def _long(tag: str) -> str:
    return "".join(
        f"{tag}第{i}句：悟空一个筋斗云，去了十万八千里，又回到花果山。" for i in range(300)
    )


def test_warm_runner_runs_flows_in_process_and_recovers_after_kill_9(stack: Stack) -> None:
    stack.runner.stop()  # only the warm runner executes from here on
    metrics_port = free_port()
    warm = ManagedProcess(
        "warm-runner",
        [sys.executable, "-m", "streams.cli", "flows", "serve", "--warm"],
        stack.settings.data_dir / "logs" / "warm-runner.log",
        env={**stack.env, "SCRIBE_RUNNER_METRICS_PORT": str(metrics_port)},
    )
    warm.start()
    try:
        novel = f"warm-{uuid.uuid4().hex[:6]}"
        asyncio.run(
            stack.produce(
                [
                    (
                        novel.encode(),
                        event(
                            "chapter.created",
                            novel,
                            f"c{i}",
                            1,
                            title="t",
                            text=f"第{i}段。孙悟空大闹天宫。",
                        ),
                    )
                    for i in range(4)
                ]
            )
        )
        expected = {f"c{i}": (1, 1) for i in range(4)}
        wait_for(lambda: converged(stack, novel, expected), 300, "4 chapters (warm)", stack)
        assert warm.proc is not None
        owner = f"{socket.gethostname()}:{warm.proc.pid}"

        def four_completed() -> list[dict[str, Any]] | None:
            # a run is indexed once it published; it completes a moment later (its artifact)
            done = [r for r in _runs(stack, novel) if r["state_type"] == "COMPLETED"]
            return done if len(done) >= 4 else None

        runs = wait_for(four_completed, 60, "4 completed runs", stack)
        assert len(runs) == 4
        assert {r["infrastructure_pid"] for r in runs} == {owner}  # executed in process
        tasks = stack.prefect(
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}, "limit": 200},
        )
        steps = ["chunk", "embed", "publish", "read event"]  # the event is read from Kafka
        assert sorted({t["name"].rsplit("-", 1)[0] for t in tasks}) == steps
        assert all(t["state_type"] == "COMPLETED" for t in tasks)
        assert len(tasks) == 4 * len(steps)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'scribe_flow_runs_finished_total{state="COMPLETED"} 4.0' in metrics
        embedded = next(
            line for line in metrics.splitlines() if line.startswith("scribe_embedded_chunks_total")
        )
        assert float(embedded.split()[-1]) == 4.0
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/health", timeout=10).status_code == 200

        # kill -9 in the middle of long runs: they must not stay Running.
        slow = f"warmkill-{uuid.uuid4().hex[:6]}"
        asyncio.run(
            stack.produce(
                [
                    (
                        slow.encode(),
                        event("chapter.created", slow, f"c{i}", 1, title="t", text=_long(str(i))),
                    )
                    for i in range(2)
                ]
            )
        )
        wait_for(
            lambda: any(r["state_type"] == "RUNNING" for r in _runs(stack, slow)),
            300,
            "a running run",
            stack,
        )
        warm.kill()
        stranded = [r for r in _runs(stack, slow) if r["state_type"] == "RUNNING"]
        assert stranded  # Prefect alone would leave these Running forever
        warm.start()

        def all_completed() -> list[dict[str, Any]] | None:
            found = _runs(stack, slow)
            ok = len(found) == 2 and all(r["state_type"] == "COMPLETED" for r in found)
            return found if ok else None

        done = wait_for(all_completed, 600, "the stranded runs completed", stack, interval=3)
        stranded_ids = {r["id"] for r in stranded}
        assert all(r["run_count"] >= 2 for r in done if r["id"] in stranded_ids)

        def indexed() -> dict[str, Any] | None:
            index = index_of(stack, slow)
            return index if set(index) == {"c0", "c1"} else None

        index = wait_for(indexed, 120, "rows of the slow novel", stack)
        for versions, chunk_nos, ids in index.values():
            assert versions == {1}
            assert chunk_nos == list(range(len(chunk_nos))) and len(set(ids)) == len(ids)
    finally:
        warm.stop()
        stack.runner.start()


def test_a_new_run_is_claimed_on_its_scheduled_event_not_at_the_next_poll(stack: Stack) -> None:
    """With a 10-minute poll, only the event stream can start the run within the wait."""
    stack.runner.stop()
    log_file = stack.settings.data_dir / "logs" / "warm-events.log"
    warm = ManagedProcess(
        "warm-events",
        [sys.executable, "-m", "streams.cli", "flows", "serve", "--warm"],
        log_file,
        env={**stack.env, "SCRIBE_RUNNER_POLL_SECONDS": "600", "SCRIBE_RUNNER_METRICS_PORT": "0"},
    )
    warm.start()
    try:
        wait_for(
            lambda: "listening for scheduled runs" in log_file.read_text(errors="replace") or None,
            180,
            "the runner's event subscription",
            stack,
        )
        novel = f"wake-{uuid.uuid4().hex[:6]}"
        text = "第一段。孙悟空大闹天宫。"
        body = event("chapter.created", novel, "c1", 1, title="t", text=text)
        asyncio.run(stack.produce([(novel.encode(), body)]))
        try:
            wait_for(
                lambda: [r for r in _runs(stack, novel) if r["state_type"] == "COMPLETED"] or None,
                240,  # well under the poll interval: a poll cannot have picked it up
                "the run started by its event",
                stack,
            )
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}\nwarm runner:\n{warm.tail(60)}")
    finally:
        warm.stop()
        stack.runner.start()


def test_a_warm_runner_rides_out_a_prefect_outage_and_still_indexes(
    stack: Stack,
) -> None:
    """Issue 10 item 1: after a Prefect outage the runner must go on indexing, and /health
    must say whether runs make progress. Issue 19, hole 9: the outage used to end the
    runner's loop, cancelling every run in flight, and start a new one; now the failed
    rounds are retried in the same loop and the runs in flight go on (unit tests:
    ``tests/unit/test_warm_runner_rounds.py``)."""
    stack.runner.stop()
    metrics_port = free_port()
    log_file = stack.settings.data_dir / "logs" / "warm-outage.log"
    warm = ManagedProcess(
        "warm-outage",
        [sys.executable, "-m", "streams.cli", "flows", "serve", "--warm"],
        log_file,
        env={
            **stack.env,
            "SCRIBE_RUNNER_METRICS_PORT": str(metrics_port),
            # the client gives up at once, so a short outage makes the runner's rounds fail
            "PREFECT_CLIENT_MAX_RETRIES": "0",
        },
    )

    def health() -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/health", timeout=10).status_code
        except httpx.HTTPError:
            return 0

    def log_count(line: str) -> int:
        return log_file.read_text(errors="replace").count(line) if log_file.exists() else 0

    warm.start()
    try:
        novel = f"outage-{uuid.uuid4().hex[:6]}"
        text = "第一段。孙悟空大闹天宫。"
        body = event("chapter.created", novel, "c1", 1, title="t", text=text)
        asyncio.run(stack.produce([(novel.encode(), body)]))
        wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "c1 (warm)", stack)
        assert health() == 200
        started = log_count("warm runner: ")

        restart_service(stack, "prefect", 15)
        wait_for(lambda: log_count("round failed") or None, 120, "a failed round logged")

        body = event("chapter.created", novel, "c2", 1, title="t", text="第二段。悟空见师父。")
        asyncio.run(stack.produce([(novel.encode(), body)]))
        try:
            wait_for(
                lambda: converged(stack, novel, {"c1": (1, 1), "c2": (1, 1)}),
                240,
                "c2 indexed by the same loop",
                stack,
            )
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}\n/health: {health()}\nwarm runner:\n{warm.tail(80)}")
        wait_for(lambda: health() == 200 or None, 30, "/health green after the recovery")
        assert log_count("warm runner stopped") == 0  # no loop restart, nothing cancelled
        assert log_count("warm runner: ") == started
    finally:
        warm.stop()
        stack.runner.start()
