"""The scaled-out stack of a chaos run, on 127.0.0.1, started and stopped by the harness.

The shape of a deployment that outgrew one process (README: "Running it on more than one
machine"), every piece a real engine:

* Kafka: three combined broker+controller nodes (KRaft, a three-voter quorum, one cluster
  id, the Maven jars of :func:`streams.embedded.stack.ensure_kafka_jars`), topics with replication
  factor 3 and ``min.insync.replicas=2``, so pausing one broker is a failover;
* PostgreSQL: the Prefect server's database and the chapter ledger (``SCRIBE_LEDGER_URL``);
* a Prefect server on it, and Milvus Lite (:class:`streams.embedded.stack.EmbeddedStack` starts
  these three, since the Kafka address is configured);
* two Faust workers in one consumer group (``scribe worker``);
* two flow runners on the one deployment, each with its own host identity
  (``SCRIBE_HOST_ID``): ``scribe flows serve --warm`` (chaos-a) and Prefect's process
  worker ``scribe flows serve`` (chaos-b).

Every port comes from :func:`streams.embedded.processes.free_port` and every file lives in one
fresh data directory, so it runs beside the integration tests' stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schemas import ConfigurationError, ServiceUnavailable
from streams.embedded.processes import ManagedProcess, free_port, port_open, wait_until
from streams.embedded.stack import (
    _LOG4J,
    EmbeddedStack,
    create_database,
    ensure_kafka_jars,
    prefect_healthy,
)
from streams.settings import Settings
from streams.topics import ensure_scribe_topics

#: Kafka nodes (each a broker and a controller voter).
BROKERS = 3
#: Chunking policy of the chaos stack (the defaults), and the text limit of histories.
MAX_TEXT_BYTES = 16 * 1024


@dataclass
class Broker:
    """One Kafka node."""

    node_id: int
    port: int
    controller_port: int
    process: ManagedProcess


def _broker_props(
    node_id: int, port: int, cport: int, voters: str, data: Path, settings: Settings
) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={settings.topic_partitions}",
            "auto.create.topics.enable=false",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "share.coordinator.state.topic.replication.factor=3",
            "share.coordinator.state.topic.min.isr=2",
            "group.initial.rebalance.delay.ms=0",
            # A paused node is fenced (leaders move) after this long without heartbeats,
            # and drops out of the ISR of the partitions it follows.
            "broker.session.timeout.ms=9000",
            "replica.lag.time.max.ms=10000",
            "unclean.leader.election.enable=false",
            f"message.max.bytes={settings.max_result_bytes}",
            f"replica.fetch.max.bytes={settings.max_result_bytes}",
            "",
        ]
    )


def kafka_cluster(home: Path, settings: Settings, count: int = BROKERS) -> list[Broker]:
    """``count`` KRaft nodes on 127.0.0.1 with free ports, formatted with one cluster id."""
    import subprocess

    libs = ensure_kafka_jars()
    java = shutil.which("java")
    if java is None:
        raise ConfigurationError("Java 17+ is needed for the Kafka cluster")
    ports = [(free_port(), free_port()) for _ in range(count)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    cluster_id = uuid.uuid4().hex[:22]
    brokers = []
    for i, (port, cport) in enumerate(ports):
        node = home / f"kafka-{i + 1}"
        data = node / "data"
        node.mkdir(parents=True, exist_ok=True)
        props = node / "server.properties"
        props.write_text(_broker_props(i + 1, port, cport, voters, data, settings))
        (node / "log4j2.properties").write_text(_LOG4J)
        jvm = [
            java,
            "-Xms128m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]
        subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            check=True,
            capture_output=True,
        )
        proc = ManagedProcess(f"kafka-{i + 1}", [*jvm, "kafka.Kafka", str(props)], node / "log")
        brokers.append(Broker(i + 1, port, cport, proc))
    return brokers


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        out.append(current)
        todo += children.get(current, [])
    return out


def signal_tree(proc: ManagedProcess, sig: int) -> list[int]:
    """Send ``sig`` to the process and all its descendants (flow runs in sessions of their
    own included); return the pids signalled."""
    if proc.proc is None:
        return []
    pids = descendants(proc.proc.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids


def _scrubbed(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without another stack's ``SCRIBE_*``/``PREFECT_*``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIBE_", "PREFECT_"))}
    return {**base, **env}


@dataclass
class ClusterStack:
    """Handles on every process of the scaled-out stack."""

    data: Path
    env: dict[str, str]
    settings: Settings
    brokers: list[Broker]
    services: EmbeddedStack
    postgres_port: int
    workers: list[ManagedProcess] = field(default_factory=list)
    runners: list[ManagedProcess] = field(default_factory=list)

    @property
    def scribe_processes(self) -> list[ManagedProcess]:
        """The workers and the runners."""
        return [*self.workers, *self.runners]

    def service(self, name: str) -> ManagedProcess:
        """``postgres``, ``prefect``, ``milvus`` or ``kafka-N``."""
        for proc in [*self.services.processes, *(b.process for b in self.brokers)]:
            if proc.name == name:
                return proc
        raise KeyError(name)

    def cli_env(self) -> dict[str, str]:
        """The environment of a ``scribe`` command against this stack."""
        return _scrubbed(self.env)

    def new_tenant(self, say: Callable[[str], None] = print) -> None:
        """Give the next chaos run a clean slate: stop the workers and runners, switch to
        new topics, group, alias and ledger database, start them again."""
        suffix = uuid.uuid4().hex[:8]
        say(f"new tenant {suffix}: restarting the workers and the runners")
        self.kill_scribe()
        fresh = tenant_env(suffix, self.postgres_port)
        self.env.update(fresh)
        self.settings = _settings_of(self.env)
        for proc in self.scribe_processes:
            proc.env.update(fresh)
        asyncio.run(create_database(self.postgres_port, f"scribe_{suffix}"))
        _create_topics(self.settings)
        self.start_scribe()

    def kill_scribe(self) -> None:
        """SIGKILL the workers and runners with their flow-run processes (only ever after
        a drain, when nothing is in flight; a graceful stop of the process worker takes
        two SIGTERMs and half a minute)."""
        for proc in reversed(self.scribe_processes):
            signal_tree(proc, signal.SIGKILL)
            proc.kill()

    def start_scribe(self) -> None:
        """Start the runners (the warm one deploys first), then the workers; wait for them."""
        first, second = self.runners
        first.start()
        _wait_deployment(self, first)
        second.start()
        # One worker at a time: two first starts race to create the index alias, and the
        # loser crashes (milvus_store ensure_collection; see RELIABILITY.md, defect 1).
        for n, worker in enumerate(self.workers):
            worker.start()
            _wait_group(self, self.workers[: n + 1])

    def stop(self) -> None:
        """Stop everything, scribe processes first, then the services, Kafka last."""
        self.kill_scribe()
        for proc in self.services.processes:
            signal_tree(proc, signal.SIGCONT)
        self.services.stop()
        for broker in self.brokers:
            signal_tree(broker.process, signal.SIGCONT)
            broker.process.stop()


def _settings_of(env: dict[str, str]) -> Settings:
    """Settings from ``env`` alone (not from this process's environment)."""
    fields = {
        k.removeprefix("SCRIBE_").lower(): v for k, v in env.items() if k.startswith("SCRIBE_")
    }
    fields = {k: v for k, v in fields.items() if k in Settings.model_fields}
    return Settings(**fields)  # type: ignore[arg-type]


def _process(
    name: str, argv: Iterable[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> ManagedProcess:
    proc = ManagedProcess(name, list(argv), log, env=env, cwd=cwd)
    # ManagedProcess adds ``env`` to os.environ: give it the scrubbed whole.
    proc.env = _scrubbed(env)
    return proc


def tenant_env(suffix: str, pg_port: int) -> dict[str, str]:
    """What one chaos run owns alone: its topics, consumer group, index alias and ledger
    database (the ledger scope follows the collection; a database of its own is clearer).
    The Prefect server, the deployment and the Kafka cluster are shared."""
    return {
        "SCRIBE_TOPIC_EVENTS": f"novel-events-{suffix}",
        "SCRIBE_TOPIC_EMBEDDINGS": f"novel-events-{suffix}.embeddings",
        "SCRIBE_TOPIC_DLQ": f"novel-events-{suffix}.dlq",
        "SCRIBE_TOPIC_FAILURES": f"novel-events-{suffix}.failures",
        "SCRIBE_APP_ID": f"scribe-chaos-{suffix}",
        "SCRIBE_MILVUS_COLLECTION": f"chunks_{suffix}",
        "SCRIBE_LEDGER_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/scribe_{suffix}",
    }


def start_cluster(data: Path | None = None, say: Callable[[str], None] = print) -> ClusterStack:
    """Start the whole scaled-out stack; raise (after stopping what started) on failure."""
    data = data or Path(tempfile.mkdtemp(prefix="scribe-chaos-"))
    data.mkdir(parents=True, exist_ok=True)  # --data-dir may name a new directory
    os.chmod(data, 0o755)  # PostgreSQL runs as its own user and must reach it
    suffix = uuid.uuid4().hex[:8]
    pg_port = free_port()
    env = {
        "SCRIBE_DATA_DIR": str(data),
        "SCRIBE_PREFECT_PORT": str(free_port()),
        "SCRIBE_MILVUS_PORT": str(free_port()),
        "SCRIBE_TOPIC_REPLICATION": "3",
        "SCRIBE_MAX_TEXT_BYTES": str(MAX_TEXT_BYTES),
        "SCRIBE_RUNNER_LIMIT": "2",
        "SCRIBE_MAX_IN_FLIGHT": "4",  # the slots of both runners together
        "SCRIBE_RUNNER_POLL_SECONDS": "1",
        "SCRIBE_SINK_BATCH_SECONDS": "0.3",
        "SCRIBE_CONSUMER_SESSION_TIMEOUT": "10",
        "SCRIBE_EMBED_THREADS": "1",
        **tenant_env(suffix, pg_port),
    }
    kafka_home = data / "kafka"
    bootstrap_settings = _settings_of(env)
    brokers = kafka_cluster(kafka_home, bootstrap_settings)
    env["SCRIBE_KAFKA_BOOTSTRAP_SERVERS"] = ",".join(f"127.0.0.1:{b.port}" for b in brokers)
    settings = _settings_of(env)
    env.update(settings.prefect_env())
    services = EmbeddedStack(settings, postgres_port=pg_port)
    stack = ClusterStack(data, env, settings, brokers, services, pg_port)
    try:
        say(f"chaos stack in {data}: starting {len(brokers)} Kafka nodes")
        for broker in brokers:
            broker.process.start()
        for broker in brokers:
            port, proc = broker.port, broker.process

            def up(port: int = port, proc: ManagedProcess = proc) -> bool:
                proc.check_alive()
                return port_open(port)

            wait_until(up, 180, broker.process.name)
        say("starting PostgreSQL, Prefect, Milvus Lite")
        services.start()
        asyncio.run(create_database(pg_port, f"scribe_{suffix}"))
        _create_topics(settings)
        logs = data / "logs"
        hosts = {"a": "chaos-a", "b": "chaos-b"}
        for tag in ("a", "b"):
            worker_env = {
                **env,
                "SCRIBE_WORKER_METRICS_PORT": str(free_port()),
                "SCRIBE_RUNNER_METRICS_PORT": str(free_port()),
                "SCRIBE_HOST_ID": hosts[tag],
            }
            home = data / f"worker-{tag}"
            home.mkdir(exist_ok=True)  # Faust's own data dir is relative to the cwd
            stack.workers.append(
                _process(
                    f"worker-{tag}",
                    [sys.executable, "-m", "streams.cli", "worker"],
                    logs / f"worker-{tag}.log",
                    worker_env,
                    cwd=home,
                )
            )
        for tag, mode in (("a", "--warm"), ("b", "--process")):
            runner_env = {
                **env,
                "SCRIBE_RUNNER_METRICS_PORT": str(free_port()),
                "SCRIBE_WORKER_METRICS_PORT": str(free_port()),
                "SCRIBE_HOST_ID": hosts[tag],
            }
            stack.runners.append(
                _process(
                    f"runner-{tag}",
                    [sys.executable, "-m", "streams.cli", "flows", "serve", mode],
                    logs / f"runner-{tag}.log",
                    runner_env,
                )
            )
        say("starting the runners (warm chaos-a, process chaos-b) and two workers")
        stack.start_scribe()
        say("chaos stack ready")
        return stack
    except BaseException:
        stack.stop()
        raise


def _create_topics(settings: Settings) -> None:
    """The topics with replication factor 3 (``SCRIBE_TOPIC_REPLICATION``), retried while
    the fresh cluster elects its controller and registers its brokers."""
    deadline = time.monotonic() + 120
    while True:
        try:
            asyncio.run(ensure_scribe_topics(settings))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _wait_deployment(stack: ClusterStack, runner: ManagedProcess, timeout: float = 300) -> None:
    import httpx

    name = stack.settings.deployment
    url = f"{stack.settings.prefect_url}/deployments/name/{name}"

    def deployed() -> bool:
        runner.check_alive()
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(deployed, timeout, f"deployment {name} by {runner.name}", interval=1)
    if not prefect_healthy(stack.settings.prefect_url):
        raise ServiceUnavailable("Prefect unhealthy after deploying")


def _wait_group(stack: ClusterStack, workers: list[ManagedProcess], timeout: float = 300) -> None:
    """``workers`` alive and serving (their metrics port answers once the app started)."""

    def ready() -> bool:
        for proc in stack.scribe_processes:
            if proc.proc is not None:
                proc.check_alive()
        return all(port_open(int(w.env["SCRIBE_WORKER_METRICS_PORT"])) for w in workers)

    wait_until(ready, timeout, "the workers", interval=1)
