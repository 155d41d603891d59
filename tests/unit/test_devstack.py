"""``scribe dev``: the sample is produced once, and every process it started is kept alive."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from streams.cli import sample_path
from streams.commands.producing import _messages, event_id_of, produce_file
from streams.embedded.devstack import SAMPLE_NOVEL, Supervisor, exit_reason, produce_sample
from streams.embedded.processes import ManagedProcess
from streams.settings import Settings


class FakeProducer:
    """Records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sent.append(value)

    async def stop(self) -> None:
        pass


class FakeTopic:
    """The input topic as a set of event ids, with a producer that adds to it."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.asked = 0

    async def present(self, settings: Settings, wanted: set[str]) -> set[str]:
        self.asked += 1
        return wanted & self.ids

    async def open_producer(self, settings: Settings) -> Any:
        topic = self

        class Producer(FakeProducer):
            async def send_and_wait(self, t: str, value: bytes, key: bytes | None) -> None:
                await super().send_and_wait(t, value, key)
                found = event_id_of(value)
                assert found is not None
                topic.ids.add(found)

        self.producer = Producer()
        return self.producer


def _produce(topic: FakeTopic, settings: Settings) -> Any:
    return asyncio.run(
        produce_file(
            settings,
            sample_path(),
            SAMPLE_NOVEL,
            1,
            None,
            Progress(console=Console(file=sys.stderr)),
            skip_present=True,
            find_present=topic.present,
            open_producer=topic.open_producer,
        )
    )


def test_the_sample_has_deterministic_event_ids() -> None:
    first = [event_id_of(v) for _, v in _messages(sample_path(), SAMPLE_NOVEL, 1)]
    again = [event_id_of(v) for _, v in _messages(sample_path(), SAMPLE_NOVEL, 1)]
    assert first == again and len(set(first)) == len(first) == 10 and None not in first


def test_the_sample_is_produced_once_then_recognised(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    topic = FakeTopic()
    first = _produce(topic, settings)
    assert (first.sent, first.already_there) == (10, 0)
    second = _produce(topic, settings)
    assert (second.sent, second.already_there) == (0, 10)
    assert len(topic.producer.sent) == 10  # the first producer; the second run opened none


def test_only_the_missing_sample_events_are_sent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    topic = FakeTopic()
    ids = [event_id_of(v) for _, v in _messages(sample_path(), SAMPLE_NOVEL, 1)]
    topic.ids = {i for i in ids[:4] if i is not None}
    done = _produce(topic, settings)
    assert (done.sent, done.already_there) == (6, 4)
    assert [event_id_of(v) for v in topic.producer.sent] == ids[4:]


def test_dev_says_when_the_sample_was_there_already(tmp_path: Path, monkeypatch: Any) -> None:
    import streams.commands.producing

    topic = FakeTopic()
    real = streams.commands.producing.produce_file

    async def fake(*args: Any, **kwargs: Any) -> Any:
        kwargs |= {"find_present": topic.present, "open_producer": topic.open_producer}
        return await real(*args, **kwargs)

    monkeypatch.setattr(streams.commands.producing, "produce_file", fake)
    settings = Settings(data_dir=tmp_path)
    outputs = []
    for _ in range(2):
        console = Console(record=True, width=200, file=io.StringIO())
        produce_sample(settings, sample_path(), console)
        outputs.append(console.export_text())
    assert "sent 10 sample events" in outputs[0]
    assert "already (10 events); not producing it again" in outputs[1]
    assert "sent" not in outputs[1]


def _sleeper(tmp_path: Path, name: str) -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / f"{name}.log"
    )


def test_supervisor_restarts_any_dead_process_and_says_which_why_and_where(
    tmp_path: Path,
) -> None:
    """Stand-ins for a service (Milvus) and an app process (worker), killed with -9."""
    milvus, worker = _sleeper(tmp_path, "milvus"), _sleeper(tmp_path, "worker")
    said: list[str] = []
    now = [100.0]
    supervisor = Supervisor(lambda: [milvus, worker], said.append, clock=lambda: now[0])
    milvus.start()
    worker.start()
    try:
        assert supervisor.check() == []
        first_pid = milvus.proc.pid if milvus.proc else None
        assert milvus.proc is not None
        milvus.proc.kill()
        milvus.proc.wait(10)
        assert supervisor.check() == ["milvus"]
        assert milvus.running and milvus.proc.pid != first_pid
        assert said == [f"milvus was killed by SIGKILL; restarting it (log: {milvus.log_path})"]
        # dies again at once: the next restart waits (2 s), then happens
        milvus.proc.kill()
        milvus.proc.wait(10)
        assert supervisor.check() == []
        now[0] += 2.5
        assert supervisor.check() == ["milvus"]
        assert supervisor.restarts == {"milvus": 2}
        assert worker.running
    finally:
        milvus.stop()
        worker.stop()
    assert supervisor.check() == []  # stopped on purpose: left alone


def test_exit_reasons() -> None:
    assert exit_reason(70) == "exited with 70"
    assert exit_reason(-9) == "was killed by SIGKILL"
    assert exit_reason(None) == "is gone"


def test_a_topic_created_by_this_start_is_not_read_first(tmp_path: Path, monkeypatch: Any) -> None:
    import streams.commands.producing

    topic = FakeTopic()
    real = streams.commands.producing.produce_file

    async def fake(*args: Any, **kwargs: Any) -> Any:
        kwargs |= {"find_present": topic.present, "open_producer": topic.open_producer}
        return await real(*args, **kwargs)

    monkeypatch.setattr(streams.commands.producing, "produce_file", fake)
    console = Console(record=True, width=200, file=io.StringIO())
    produce_sample(Settings(data_dir=tmp_path), sample_path(), console, topic_is_new=True)
    assert topic.asked == 0
    assert "sent 10 sample events" in console.export_text()


def test_a_fresh_machine_fetches_the_broker_jars_from_the_projects_maven_file() -> None:
    """Without cached jars, Maven reads compose/kafka/pom.xml; a wrong path means a download
    from archive.apache.org, which a machine that reaches only package registries cannot do."""
    from streams.embedded.stack import KAFKA_POM, KAFKA_VERSION

    root = Path(__file__).resolve().parents[2]
    assert root / "compose" / "kafka" / "pom.xml" == KAFKA_POM
    pom = KAFKA_POM.read_text(encoding="utf-8")
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
