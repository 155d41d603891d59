"""The embedded stack on 127.0.0.1: Apache Kafka (KRaft), PostgreSQL, Prefect, Milvus Lite.

Used by ``scribe dev`` and by the integration tests; no Docker. Data lives under
``Settings.data_dir`` and survives restarts. A service whose address is configured
(``SCRIBE_KAFKA_BOOTSTRAP_SERVERS``, ``SCRIBE_PREFECT_API_URL``, ``SCRIBE_MILVUS_URI``)
is used as it is and not started.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import uuid
from pathlib import Path

import httpx

from schemas import ConfigurationError, ServiceUnavailable
from streams.embedded.processes import ManagedProcess, port_open, wait_until
from streams.settings import Settings

log = logging.getLogger("scribe.stack")

KAFKA_VERSION = "4.4.0"
KAFKA_TARBALL = (
    "https://archive.apache.org/dist/kafka/{v}/kafka_2.13-{v}.tgz"  # fallback without Maven
)
REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "compose" / "kafka" / "pom.xml"


def kafka_libs_dir() -> Path:
    """Cache folder of the broker's jars (``SCRIBE_KAFKA_LIBS`` overrides)."""
    override = os.environ.get("SCRIBE_KAFKA_LIBS")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "scribe-stream" / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_kafka_jars() -> Path:
    """Fetch the broker jars once: with Maven from compose/kafka/pom.xml, else the tarball."""
    libs = kafka_libs_dir()
    if glob.glob(str(libs / "kafka_2.13-*.jar")):
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    if mvn and KAFKA_POM.exists():
        log.info("fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
        )
    else:
        url = KAFKA_TARBALL.format(v=KAFKA_VERSION)
        log.info("Maven not found; downloading %s", url)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "kafka.tgz"
            urllib.request.urlretrieve(url, archive)
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            for jar in Path(tmp).glob("kafka_2.13-*/libs/*.jar"):
                shutil.copy2(jar, libs / jar.name)
    if not glob.glob(str(libs / "kafka_2.13-*.jar")):
        raise ConfigurationError(f"no Kafka jars in {libs} after fetching")
    return libs


_LOG4J = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


def kafka_process(settings: Settings) -> ManagedProcess:
    """A single-node KRaft broker+controller on 127.0.0.1, formatted on first start."""
    libs = ensure_kafka_jars()
    java = shutil.which("java")
    if java is None:
        raise ConfigurationError("Java 17+ is needed for the embedded Kafka broker")
    home = (settings.data_dir / "kafka").resolve()
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    port, cport = settings.kafka_port, settings.kafka_controller_port
    props = home / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                f"num.partitions={settings.topic_partitions}",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "group.initial.rebalance.delay.ms=0",
                f"message.max.bytes={settings.max_result_bytes}",
                f"replica.fetch.max.bytes={settings.max_result_bytes}",
                "",
            ]
        )
    )
    (home / "log4j2.properties").write_text(_LOG4J)
    classpath = f"{libs}/*"
    jvm = [
        java,
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp",
        classpath,
    ]
    if not (data / "meta.properties").exists():
        subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(props),
            ],
            check=True,
            capture_output=True,
        )
    return ManagedProcess("kafka", [*jvm, "kafka.Kafka", str(props)], home / "kafka.log")


def _find_pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _pg_bin(name: str) -> str:
    path = _find_pg_bin(name)
    if path is None:
        raise ConfigurationError(f"PostgreSQL's {name} not found (apt-get install postgresql)")
    return path


def postgres_available() -> bool:
    """Whether PostgreSQL's server binaries (``initdb``, ``postgres``) are installed."""
    return all(_find_pg_bin(name) is not None for name in ("initdb", "postgres"))


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def postgres_process(data_dir: Path, port: int) -> ManagedProcess:
    """A private PostgreSQL cluster on 127.0.0.1:``port`` with trust auth, initdb'd once."""
    home = data_dir.resolve() / "postgres"
    cluster = home / "cluster"
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    if not (cluster / "PG_VERSION").exists():
        done = subprocess.run(
            _as_postgres(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(cluster),
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigurationError(
                f"initdb failed (the postgres user must be able to reach {home}): {done.stderr}"
            )
    argv = _as_postgres(
        [
            _pg_bin("postgres"),
            "-D",
            str(cluster),
            "-p",
            str(port),
            "-k",
            str(home),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
        ]
    )
    return ManagedProcess(
        "postgres", argv, home.parent / "postgres.log", stop_signals=(signal.SIGINT,)
    )


async def create_database(port: int, name: str) -> None:
    """``CREATE DATABASE name`` unless it exists (asyncpg, trust auth)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def prefect_process(settings: Settings, database_url: str | None) -> ManagedProcess:
    """``prefect server start`` on 127.0.0.1 with the API URL and home set."""
    env = settings.prefect_env()
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    env["PREFECT_UI_API_URL"] = settings.prefect_url
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env |= settings.prefect_retention_env()
    argv = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.prefect_port),
    ]
    return ManagedProcess("prefect", argv, settings.data_dir / "logs" / "prefect.log", env=env)


def prefect_healthy(api_url: str) -> bool:
    """``GET /health`` answers 200."""
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def milvus_process(settings: Settings) -> ManagedProcess:
    """``milvus-lite server`` on 127.0.0.1 (one process owns the data dir)."""
    exe = Path(sys.executable).with_name("milvus-lite")
    data = (settings.data_dir / "milvus").resolve()
    argv = [
        str(exe),
        "server",
        "--data-dir",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.milvus_port),
    ]
    return ManagedProcess("milvus", argv, settings.data_dir / "logs" / "milvus.log")


class EmbeddedStack:
    """Starts the services the settings leave unconfigured, and stops them in reverse."""

    def __init__(self, settings: Settings, *, postgres_port: int | None = None) -> None:
        self.settings = settings
        self.postgres_port = postgres_port
        self.processes: list[ManagedProcess] = []
        #: The embedded Prefect server's database, in words (set by :meth:`start`).
        self.prefect_database = "none started"

    def _run(self, proc: ManagedProcess, ready: object, timeout: float) -> ManagedProcess:
        proc.start()
        self.processes.append(proc)

        def check() -> bool:
            proc.check_alive()
            return bool(ready())  # type: ignore[operator]

        wait_until(check, timeout, proc.name)
        log.info("%s ready", proc.name)
        return proc

    def _ensure_free(self, port: int, what: str) -> None:
        if port_open(port):
            raise ServiceUnavailable(
                f"port {port} for {what} is already in use (another scribe dev running?)"
            )

    def start(self) -> None:
        """Start Kafka, PostgreSQL (if asked), Prefect and Milvus Lite as needed."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if s.embedded_kafka:
                self._ensure_free(s.kafka_port, "Kafka")
                self._run(kafka_process(s), lambda: port_open(s.kafka_port), 120)
            if s.milvus_uri is None:
                self._ensure_free(s.milvus_port, "Milvus Lite")
                self._run(milvus_process(s), lambda: port_open(s.milvus_port), 60)
            if s.prefect_api_url is None:
                self._ensure_free(s.prefect_port, "Prefect")
                db_url = (
                    s.prefect_database_url.get_secret_value() if s.prefect_database_url else None
                )
                if db_url is not None:
                    self.prefect_database = "SCRIBE_PREFECT_DATABASE_URL"
                elif self.postgres_port is not None:
                    port = self.postgres_port
                    self._run(postgres_process(s.data_dir, port), lambda: port_open(port), 60)
                    asyncio.run(_retry_create_database(port, "prefect"))
                    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
                    self.prefect_database = f"PostgreSQL on 127.0.0.1:{port}"
                else:
                    self.prefect_database = f"SQLite in {s.data_dir / 'prefect'}"
                self._run(prefect_process(s, db_url), lambda: prefect_healthy(s.prefect_url), 180)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything started, newest first."""
        while self.processes:
            proc = self.processes.pop()
            log.info("stopping %s", proc.name)
            proc.stop()


async def _retry_create_database(port: int, name: str) -> None:
    for _ in range(50):
        try:
            await create_database(port, name)
            return
        except (OSError, Exception) as exc:  # starting up: connection refused / not ready
            last = exc
            await asyncio.sleep(0.3)
    raise ServiceUnavailable(f"PostgreSQL on {port} not accepting connections: {last}")
