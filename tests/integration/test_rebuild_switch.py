"""A full rebuild under steady traffic switches caught up, and ends (issue 19, hole 4).

The rebuilds here have their own input topic and alias (as in ``test_replay.py``'s model
change), so they re-embed only this test's history while the live worker applies steady
traffic of the session's topic to the shared results topic.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.adapters.milvus.store import MilvusVectorStore
from tests.integration.harness import Stack, event

pytestmark = pytest.mark.integration

#: The rebuild may switch with at most this many input messages not yet applied.
SWITCH_LAG = 2
EDIT_EVERY = 8.0


def _setup(stack: Stack, alias: str, old: str, topic: str) -> None:
    async def run() -> None:
        store = MilvusVectorStore(stack.settings.milvus_url, alias)
        admin = AIOKafkaAdminClient(**stack.kafka.client_config())
        await admin.start()
        try:
            await store.create_collection(old, 384)
            await store.point_alias(old)
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await store.close()
            await admin.close()

    asyncio.run(run())


class _Traffic:
    """Until stopped: edits of one chapter on the rebuild's topic every ``EDIT_EVERY``
    seconds (each acknowledged, timed), or cheap live traffic on the session's topic (a
    chapter deletion every ``live_every`` seconds: no flow run, a result each)."""

    def __init__(self, stack: Stack, topic: str, novel: str, live_every: float = 0.0) -> None:
        self.stack, self.topic, self.novel = stack, topic, novel
        self.live_every = live_every
        self.edits: list[tuple[float, int]] = []  # (acknowledged at, version)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        producer = await self.stack.start_producer()
        live = f"live-{uuid.uuid4().hex[:6]}".encode()
        try:
            version, next_edit = 2, time.monotonic() + EDIT_EVERY / 2
            while not self.stop.is_set():
                if self.live_every:
                    deletion = event("chapter.deleted", live.decode(), "c", version)
                    await producer.send_and_wait(
                        self.stack.settings.topic_events, deletion, key=live
                    )
                    version += 1
                    await asyncio.sleep(self.live_every)
                    continue
                if time.monotonic() >= next_edit:
                    text = f"第{version}稿。"
                    edit = event("chapter.updated", self.novel, "c0", version, title="t", text=text)
                    await producer.send_and_wait(self.topic, edit, key=self.novel.encode())
                    self.edits.append((time.monotonic(), version))
                    version, next_edit = version + 1, next_edit + EDIT_EVERY
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()


def _watch_switch(stack: Stack, alias: str, old: str, novel: str, out: dict[str, object]) -> None:
    """Poll the alias; the moment it moves, read the edited chapter's version behind it."""

    async def run() -> None:
        store = MilvusVectorStore(stack.settings.milvus_url, alias)
        try:
            while "stop" not in out:
                now = await store.physical()
                if now not in (None, old):
                    seen = time.monotonic()
                    target = MilvusVectorStore(stack.settings.milvus_url, now)
                    try:
                        rows = await target.query_rows(
                            f'novel_id == "{novel}" and chapter_id == "c0"', ["chapter_version"]
                        )
                    finally:
                        await target.close()
                    out["at"] = seen
                    out["version"] = max((int(r["chapter_version"]) for r in rows), default=0)
                    return
                await asyncio.sleep(0.3)
        finally:
            await store.close()

    asyncio.run(run())


def _start_replay(stack: Stack, alias: str, topic: str) -> subprocess.Popen[str]:
    env = {
        **stack.env,
        "SCRIBE_MILVUS_COLLECTION": alias,
        "SCRIBE_TOPIC_EVENTS": topic,
        "SCRIBE_REBUILD_SWITCH_LAG": str(SWITCH_LAG),
        "SCRIBE_REBUILD_MAX_ROUNDS": "8",
        # One run per chapter: the first round must last long enough for the steady traffic
        # to log more than the lag bound meanwhile (batch runs, the default, finish these
        # few chapters so fast that one round would do, and no catch-up would be seen).
        "SCRIBE_REPLAY_BATCH_CHAPTERS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "replay", "--reembed"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(replay: subprocess.Popen[str], timeout: float) -> tuple[bool, str, str]:
    """(ended in time, stdout, stderr); killed when it did not."""
    try:
        out, err = replay.communicate(timeout=timeout)
        return True, out, err
    except subprocess.TimeoutExpired:
        replay.kill()
        out, err = replay.communicate()
        return False, out, err


def test_a_full_rebuild_under_steady_edits_switches_caught_up(stack: Stack) -> None:
    """Hole 4: the rebuild switched after one snapshot of the log, so everything logged
    while it ran reached the new collection only after the switch (search missed recent
    edits meanwhile). Now it reads again to the new end, round after round, and switches
    once at most ``SCRIBE_REBUILD_SWITCH_LAG`` messages are left."""
    suffix = uuid.uuid4().hex[:6]
    alias, topic, novel = f"lag_{suffix}", f"lag-events-{suffix}", f"lag-{suffix}"
    old = f"{alias}__old"
    _setup(stack, alias, old, topic)
    # The first round must outlast the first edits, or it ends the rebuild alone and no
    # catch-up is seen: on the warm runner 16 one-line chapters took under 8 s.
    history = [
        (novel.encode(), event("chapter.created", novel, f"c{i}", 1, title="t", text=f"{i}句。"))
        for i in range(40)
    ]

    async def produce() -> None:
        producer = await stack.start_producer()
        try:
            for key, value in history:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(produce())
    traffic = _Traffic(stack, topic, novel)
    switch: dict[str, object] = {}
    watcher = threading.Thread(
        target=_watch_switch, args=(stack, alias, old, novel, switch), daemon=True
    )
    traffic.thread.start()
    watcher.start()
    replay = _start_replay(stack, alias, topic)
    try:
        ended, out, err = _finish(replay, 240)
    finally:
        traffic.stop.set()
        switch.setdefault("stop", True)
        traffic.thread.join(30)
        watcher.join(30)
    assert "at" in switch, f"the alias never moved; replay ended={ended}\n{err[-3000:]}"
    at, applied = float(switch["at"]), int(switch["version"])  # type: ignore[arg-type]
    missing = [v for t, v in traffic.edits if t < at and v > applied]
    # What was logged before the switch is behind the alias, but for the last few messages
    # (the lag bound), and one edit logged while the alias moved and was read back.
    assert len(missing) <= SWITCH_LAG + 1, (
        f"at the switch the index held v{applied}; edits logged before it and missing: "
        f"{missing}\n{err[-3000:]}"
    )
    assert ended and replay.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["previous_collection"] == old
    assert summary["switch_lag"] <= SWITCH_LAG, summary
    assert summary["rounds"] >= 2, f"edits logged during the first round: {traffic.edits}"


def test_a_full_rebuild_ends_under_steady_live_traffic(stack: Stack) -> None:
    """Hole 4: a rebuild settled only once the worker had applied the results topic up to
    its end *as read at each check*; live results kept moving that end, so under steady
    traffic the rebuild never switched nor ended (before the fix: still waiting after
    120 s, with nothing to rebuild). Now each round settles against an end read once."""
    suffix = uuid.uuid4().hex[:6]
    alias, topic = f"steady_{suffix}", f"steady-events-{suffix}"
    old = f"{alias}__old"
    _setup(stack, alias, old, topic)
    traffic = _Traffic(stack, topic, f"steady-{suffix}", live_every=0.3)
    traffic.thread.start()
    replay = _start_replay(stack, alias, topic)
    try:
        ended, out, err = _finish(replay, 120)
    finally:
        traffic.stop.set()
        traffic.thread.join(30)
    assert ended, f"the rebuild did not end under steady traffic\n{err[-3000:]}"
    assert replay.returncode == 0, err[-3000:]
    assert json.loads(out)["previous_collection"] == old
