"""Ordering, idempotency, bounded work, dead letters and status on real services."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest

from tests.integration.harness import Stack, converged, event, wait_for

pytestmark = pytest.mark.integration


def _short(tag: str) -> str:
    return f"{tag}。唐僧师徒四人西行取经，历经八十一难。"


def _long(tag: str) -> str:  # ~40 chunks: this version's flow run takes much longer
    return "".join(
        f"{tag}第{i}句：那猴王在花果山水帘洞中，与群猴饮酒作乐，好不快活。" for i in range(700)
    )


def runs(stack: Stack, tag: str) -> list[dict[str, Any]]:
    return list(
        stack.prefect("/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 200})
    )


def test_a_slow_older_version_finishing_last_does_not_overwrite_the_newest(stack: Stack) -> None:
    novel = f"order-{uuid.uuid4().hex[:6]}"
    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.created", novel, "c", 1, title="t", text=_short("一")),
                ),
                (
                    novel.encode(),
                    event("chapter.updated", novel, "c", 2, title="t", text=_long("二")),
                ),
                (
                    novel.encode(),
                    event("chapter.updated", novel, "c", 3, title="t", text=_short("三")),
                ),
            ]
        )
    )

    def all_done() -> list[dict[str, Any]] | None:
        found = [r for r in runs(stack, f"novel:{novel}") if r["state_type"] == "COMPLETED"]
        return found if len(found) == 3 else None

    done = wait_for(all_done, 600, "three completed runs", stack, interval=3)
    ended = {r["name"].rsplit("@v", 1)[1]: r["end_time"] for r in done}
    assert ended["2"] > ended["3"], "v2 was meant to finish after v3"
    time.sleep(3)  # the sink has had time to see v2's late result
    assert wait_for(lambda: converged(stack, novel, {"c": (3, 1)}), 60, "v3 only", stack)


def test_a_delete_beats_an_older_result_that_arrives_later(stack: Stack) -> None:
    novel = f"delrace-{uuid.uuid4().hex[:6]}"
    asyncio.run(
        stack.produce(
            [
                (
                    novel.encode(),
                    event("chapter.created", novel, "c", 1, title="t", text=_long("删")),
                ),
                (novel.encode(), event("chapter.deleted", novel, "c", 2)),
                (
                    novel.encode(),
                    event("chapter.created", novel, "keep", 1, title="t", text=_short("留")),
                ),
            ]
        )
    )
    wait_for(
        lambda: any(
            r["state_type"] == "COMPLETED" and "chapter:c" in r["tags"]
            for r in runs(stack, f"novel:{novel}")
        ),
        600,
        "v1 run completed",
        stack,
    )
    time.sleep(3)
    assert wait_for(lambda: converged(stack, novel, {"keep": (1, 1)}), 60, "c deleted", stack)


def test_redelivered_events_create_no_new_runs_and_no_new_rows(stack: Stack) -> None:
    novel = f"dup-{uuid.uuid4().hex[:6]}"
    messages = [
        (
            novel.encode(),
            event("chapter.created", novel, f"c{i}", 1, title="t", text=_short(str(i))),
        )
        for i in range(3)
    ]
    asyncio.run(stack.produce(messages))
    expected = {f"c{i}": (1, 1) for i in range(3)}
    wait_for(lambda: converged(stack, novel, expected), 300, "3 chapters", stack)
    asyncio.run(stack.produce(messages))  # the same events again (same ids): a redelivery
    marker = f"dup-marker-{uuid.uuid4().hex[:6]}"
    asyncio.run(
        stack.produce(
            [
                (
                    marker.encode(),
                    event("chapter.created", marker, "m", 1, title="t", text=_short("m")),
                )
            ]
        )
    )
    wait_for(lambda: converged(stack, marker, {"m": (1, 1)}), 300, "marker after", stack)
    assert len(runs(stack, f"novel:{novel}")) == 3
    assert converged(stack, novel, expected)


def test_submissions_stay_within_the_in_flight_bound(stack: Stack) -> None:
    bound = stack.settings.in_flight_bound
    novel = f"bound-{uuid.uuid4().hex[:6]}"
    count = 3 * bound
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            open_runs = stack.prefect(
                "/flow_runs/count",
                {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}}}},
            )
            peak = max(peak, int(open_runs))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        asyncio.run(
            stack.produce(
                [
                    (
                        novel.encode(),
                        event("chapter.created", novel, f"c{i}", 1, title="t", text=_short(str(i))),
                    )
                    for i in range(count)
                ]
            )
        )
        wait_for(
            lambda: converged(stack, novel, {f"c{i}": (1, 1) for i in range(count)}),
            900,
            f"{count} chapters",
            stack,
            interval=3,
        )
    finally:
        stop.set()
        watcher.join()
    assert peak <= bound, f"{peak} runs in flight with a bound of {bound}"
    assert peak >= bound - 1, f"the backlog never reached the bound ({peak} of {bound})"


def test_dead_letters_can_be_listed_shown_and_redriven(stack: Stack) -> None:
    novel = f"dlqcli-{uuid.uuid4().hex[:6]}"
    bad = json.loads(event("chapter.created", novel, "c", 1, title="t", text="x"))
    bad["schema_version"] = 2
    value = json.dumps(bad).encode()
    asyncio.run(stack.produce([(novel.encode(), value)]))

    def parked() -> list[dict[str, Any]] | None:
        out = stack.scribe("dlq", "list", "--json", "--limit", "1000")
        assert out.returncode == 0, out.stderr
        mine = [p for p in json.loads(out.stdout) if p["key"] == novel]
        return mine or None

    [letter] = wait_for(parked, 120, "the dead letter", stack, interval=2)
    assert letter["error_class"] == "UnsupportedSchemaVersion"
    assert letter["retriable"] is False and letter["redrive"] == 0
    shown = stack.scribe("dlq", "show", letter["position"])
    assert shown.returncode == 0 and "schema_version" in shown.stdout
    redriven = stack.scribe("dlq", "redrive", letter["position"])
    assert redriven.returncode == 0, redriven.stderr
    again = wait_for(
        lambda: [p for p in parked() or [] if p["redrive"] == 1] or None,
        120,
        "the redriven event dead-lettered again",
        stack,
        interval=2,
    )
    assert again[0]["error_class"] == "UnsupportedSchemaVersion"


def test_status_reports_every_section_and_its_health(stack: Stack) -> None:
    out = stack.scribe("status", "--json")
    report = json.loads(out.stdout)
    assert {"kafka", "prefect", "ledger", "index", "problems"} <= set(report)
    assert "error" not in report["kafka"] and "error" not in report["prefect"]
    topics = {p["topic"] for p in report["kafka"]["partitions"]}
    assert topics == {stack.settings.topic_events, stack.settings.topic_embeddings}
    assert report["kafka"]["dlq_size"] > 0  # earlier tests parked malformed events
    assert report["ledger"]["counts"]["indexed"] > 0
    assert report["index"]["rows"] > 0 and report["index"]["model"]
    assert report["prefect"]["runs"]["completed"] > 0
    assert out.returncode == (1 if report["problems"] else 0)
