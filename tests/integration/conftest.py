"""Session fixture: the real services and the scribe processes under test (see harness);
module fixture: a Milvus Lite server alone, for tests that need that service only."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.embedded.processes import ManagedProcess, free_port, port_open
from streams.embedded.stack import EmbeddedStack, create_database, milvus_process
from streams.settings import Settings
from streams.topics import ensure_scribe_topics
from tests.conftest import stack_of
from tests.integration.harness import Stack


@pytest.fixture(scope="module")
def milvus_url() -> Iterator[str]:
    """A Milvus Lite server of its own, on a free port."""
    with tempfile.TemporaryDirectory(prefix="scribe-milvus-") as data:
        settings = Settings(data_dir=Path(data), milvus_port=free_port())
        proc = milvus_process(settings)
        proc.start()
        try:
            deadline = time.monotonic() + 120
            while not port_open(settings.milvus_port):
                proc.check_alive()
                assert time.monotonic() < deadline, proc.tail(40)
                time.sleep(0.5)
            yield settings.milvus_url
        finally:
            proc.stop()


#: The flow runner each stack's ``scribe flows serve`` runs (``tests/conftest.py`` names
#: the stacks). Both are production runners. Under ``-n 3`` the stack of the pipeline,
#: edit, replay and rebuild tests, whose guarantees do not depend on how a run executes,
#: runs the warm runner (the default of ``scribe dev``: one process, the model loaded
#: once); the stacks of the fault, crash and failure tests run Prefect's process worker
#: (a process per run, orphaned by a kill -9), as does the one stack of a serial run.
#: A test that swaps the runner chooses its own (``test_failures.swapped_runner``).
RUNNER_MODES = {"stack-a": ["--warm"]}


def runner_mode(request: pytest.FixtureRequest) -> list[str]:
    """The ``flows serve`` option of the stack that ``request``'s first test runs on."""
    item = getattr(request, "_pyfuncitem", None)
    if item is None or not os.environ.get("PYTEST_XDIST_WORKER"):
        return []
    return RUNNER_MODES.get(stack_of(item.nodeid) or "", [])


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The whole pipeline on real services."""
    # Not under pytest's 0700 temp root: PostgreSQL runs as its own user and must reach it.
    data = Path(tempfile.mkdtemp(prefix="scribe-it-"))
    os.chmod(data, 0o755)
    suffix = uuid.uuid4().hex[:8]
    env = {
        "SCRIBE_DATA_DIR": str(data),
        "SCRIBE_KAFKA_PORT": str(free_port()),
        "SCRIBE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SCRIBE_PREFECT_PORT": str(free_port()),
        "SCRIBE_MILVUS_PORT": str(free_port()),
        "SCRIBE_WORKER_METRICS_PORT": str(free_port()),
        "SCRIBE_RUNNER_METRICS_PORT": str(free_port()),
        "SCRIBE_TOPIC_EVENTS": f"novel-events-{suffix}",
        "SCRIBE_TOPIC_EMBEDDINGS": f"novel-events-{suffix}.embeddings",
        "SCRIBE_TOPIC_DLQ": f"novel-events-{suffix}.dlq",
        "SCRIBE_APP_ID": f"scribe-test-{suffix}",
        "SCRIBE_RUNNER_LIMIT": "2",
        "SCRIBE_RUNNER_POLL_SECONDS": "1",
        "SCRIBE_SINK_BATCH_SECONDS": "0.3",
        "SCRIBE_CONSUMER_SESSION_TIMEOUT": "10",
    }
    if os.environ.get("SCRIBE_KAFKA_BOOTSTRAP_SERVERS"):
        env["SCRIBE_KAFKA_BOOTSTRAP_SERVERS"] = os.environ["SCRIBE_KAFKA_BOOTSTRAP_SERVERS"]
    pg_port = free_port()
    env["SCRIBE_LEDGER_URL"] = f"postgresql://postgres@127.0.0.1:{pg_port}/scribe"
    os.environ.update(env)  # the settings of this process and of every child
    settings = Settings()
    env.update(settings.prefect_env())
    services = EmbeddedStack(settings, postgres_port=pg_port)
    services.start()
    asyncio.run(create_database(pg_port, "scribe"))
    logs = data / "logs"
    runner = ManagedProcess(
        "runner",
        [sys.executable, "-m", "streams.cli", "flows", "serve", *runner_mode(request)],
        logs / "runner.log",
        env=env,
    )
    worker = ManagedProcess(
        "worker", [sys.executable, "-m", "streams.cli", "worker"], logs / "worker.log", env=env
    )
    handle = Stack(settings, env, services, runner, worker)
    try:
        asyncio.run(ensure_scribe_topics(settings))
        runner.start()
        worker.start()
        yield handle
    finally:
        worker.stop()
        runner.stop()
        services.stop()
    if os.environ.get("SCRIBE_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data, ignore_errors=True)


#: Modules in the order they share the session's stack: the pipeline first; the replays
#: early, while the log is short (a full re-embed redoes every chapter in it); the tests
#: that kill and restart services last.
ORDER = [
    "test_chaos",
    "test_pipeline",
    "test_topics",
    "test_flow_submitter",
    "test_edits",
    "test_ledger_postgres",
    "test_replay",
    "test_rebuild_switch",
    "test_rebuild_gaps",
    "test_operations",
    "test_dlq",
    "test_index",
    "test_status",
    "test_guarantees",
    "test_crashes",
    "test_failures",
    "test_warm_runner",
    "test_faults",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the integration modules in ``ORDER`` (unknown ones after, alphabetically); under
    pytest-xdist each worker keeps this order for its stack (``tests/conftest.py``)."""

    def rank(item: pytest.Item) -> tuple[int, str]:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if "integration" not in item.nodeid and module != "test_chaos":
            return (-1, "")  # unit tests keep their place, before these
        return (ORDER.index(module) if module in ORDER else len(ORDER), module)

    items.sort(key=rank)  # stable: tests keep their order within a module
