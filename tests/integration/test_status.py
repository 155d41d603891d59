"""``scribe status`` tells the truth about the index (issue 19, hole 10), on real services.

Written to fail before its fix: with the index emptied behind the ledger's back,
``scribe status`` said healthy and named no repair.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.integration.harness import Stack, converged, event, wait_for

pytestmark = pytest.mark.integration

REPAIR = "scribe replay --resink"


def _status(stack: Stack, *args: str) -> tuple[int, str]:
    out = stack.scribe("status", *args)
    return out.returncode, out.stdout


def _report(stack: Stack) -> tuple[int, dict[str, Any]]:
    code, text = _status(stack, "--json")
    return code, dict(json.loads(text))


def _drop_rows_behind_the_ledgers_back(stack: Stack, novel: str) -> None:
    """Delete the novel's rows in Milvus, as a lost data directory would, ledger untouched."""

    async def run() -> None:
        store = stack.store()
        try:
            await store.delete_novel(novel)
            await store.flush()
        finally:
            await store.close()

    asyncio.run(run())


def _produce(stack: Stack, novel: str, chapters: int) -> None:
    async def run() -> None:
        producer = await stack.start_producer()
        try:
            for i in range(1, chapters + 1):
                text = f"第{i}回。" + "花果山上有一块仙石，受天真地秀，日精月华。" * i
                value = event("chapter.created", novel, f"c{i}", 1, title="t", text=text)
                await producer.send_and_wait(stack.settings.topic_events, value, novel.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def test_status_is_unhealthy_while_the_index_lacks_rows_and_names_the_resink(
    stack: Stack,
) -> None:
    novel = f"status-{uuid.uuid4().hex[:6]}"
    _produce(stack, novel, 3)
    wait_for(
        lambda: converged(stack, novel, {f"c{i}": (1, 1) for i in range(1, 4)}),
        300,
        "the novel indexed",
        stack,
    )

    # The stack is shared: earlier tests may leave chapters pending or failed. Judge the
    # damage against a settled reading (the same counts twice in a row), not against zero.
    readings: list[dict[str, Any]] = []

    def settled() -> dict[str, Any] | None:
        readings.append(_report(stack)[1])
        if len(readings) < 2:
            return None
        previous, last = (r["index"] for r in readings[-2:])
        same = all(previous.get(k) == last.get(k) for k in ("rows", "expected_rows"))
        return readings[-1] if same else None

    before = wait_for(settled, 120, "a settled reading of the index", stack, interval=2)
    missing_before = before["index"].get("missing_rows", 0)

    _drop_rows_behind_the_ledgers_back(stack, novel)

    code, text = _status(stack)
    assert code == 1, text
    assert REPAIR in text, text
    code, report = _report(stack)
    assert code == 1
    assert report["index"]["missing_rows"] == missing_before + 3
    assert report["index"]["rows"] == before["index"]["rows"] - 3
    (finding,) = [f for f in report["findings"] if f["check"] == "index_rows"]
    assert REPAIR in finding["repair"]
    assert any(REPAIR in p for p in report["problems"])

    resink = stack.scribe("replay", "--resink", timeout=600)
    assert resink.returncode == 0, resink.stderr[-3000:]
    assert converged(stack, novel, {f"c{i}": (1, 1) for i in range(1, 4)})

    code, after = _report(stack)
    assert after["index"]["missing_rows"] == 0
    assert not [f for f in after["findings"] if f["check"] == "index_rows"]
    assert not [p for p in after["problems"] if REPAIR in p]
    if not before["problems"]:  # healthy before the damage: healthy again after the repair
        assert (code, after["problems"]) == (0, []), after["problems"]


def test_status_names_the_worker_when_results_wait_unconsumed(stack: Stack) -> None:
    """A group that has not consumed the results for longer than the limit: the sink is
    not advancing. Seen through a group that never ran (the live worker must keep up)."""
    novel = f"status-sink-{uuid.uuid4().hex[:6]}"
    _produce(stack, novel, 1)
    wait_for(lambda: converged(stack, novel, {"c1": (1, 1)}), 300, "the chapter indexed", stack)
    live = _report(stack)[1]
    assert not [f for f in live["findings"] if f["check"] == "sink_stalled"]

    stalled = stack.scribe(
        "status",
        "--json",
        env_extra={
            "SCRIBE_APP_ID": f"never-ran-{uuid.uuid4().hex[:6]}",
            "SCRIBE_STATUS_RESULT_WAIT_SECONDS": "1",
        },
    )
    assert stalled.returncode == 1
    report = json.loads(stalled.stdout)
    waiting = report["kafka"]["results_waiting"]
    assert waiting and all(w["lag"] > 0 and w["oldest_at"] for w in waiting)
    assert all(w["oldest_at"] <= report["checked_at"] for w in waiting)
    (finding,) = [f for f in report["findings"] if f["check"] == "sink_stalled"]
    assert stack.settings.topic_embeddings in finding["problem"]
    assert "`scribe worker`" in finding["repair"]
