"""The one embedded stack of a bench run, and the settings of each measured scenario.

Like the integration tests: a private temp data dir, free ports on 127.0.0.1, Prefect on a
private PostgreSQL, the chapter ledger on that PostgreSQL too, ``SCRIBE_RUNNER_LIMIT=2``.
Every scenario gets its own topics, consumer group, Milvus alias, deployment and work
pool (a suffix), so runs never mix.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streams.embedded.processes import ManagedProcess, free_port
from streams.embedded.stack import EmbeddedStack, create_database
from streams.settings import Settings

#: Settings the bench pins (the integration tests use the same values).
PINNED = {
    "SCRIBE_RUNNER_LIMIT": "2",
    "SCRIBE_RUNNER_POLL_SECONDS": "1",
    "SCRIBE_SINK_BATCH_SECONDS": "0.3",
    "SCRIBE_CONSUMER_SESSION_TIMEOUT": "10",
    "SCRIBE_EMBED_THREADS": "2",
    "SCRIBE_LOG_LEVEL": "INFO",
}


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings a child process started with ``env`` reads."""
    values = {
        k.removeprefix("SCRIBE_").lower(): v for k, v in env.items() if k.startswith("SCRIBE_")
    }
    return Settings.model_validate(values)


@dataclass
class BenchEnv:
    """Data dir, ports and the environment shared by the bench and its children."""

    data_dir: Path
    suffix: str
    postgres_port: int
    env: dict[str, str]
    settings: Settings
    stack: EmbeddedStack | None = None
    keep_data: bool = False
    children: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    def create(cls, poll_seconds: float | None = None) -> BenchEnv:
        """Pick ports and a data dir; export the environment (Prefect's before its import).

        ``SCRIBE_*`` variables of the calling shell are dropped: the bench always measures
        its own stack.
        """
        for name in [k for k in os.environ if k.startswith("SCRIBE_")]:
            del os.environ[name]
        # Not under a 0700 temp root: PostgreSQL runs as its own user and must reach it.
        data = Path(tempfile.mkdtemp(prefix="scribe-bench-"))
        os.chmod(data, 0o755)
        suffix = uuid.uuid4().hex[:6]
        pg_port = free_port()
        env = {
            "SCRIBE_DATA_DIR": str(data),
            "SCRIBE_KAFKA_PORT": str(free_port()),
            "SCRIBE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "SCRIBE_PREFECT_PORT": str(free_port()),
            "SCRIBE_MILVUS_PORT": str(free_port()),
            "SCRIBE_LEDGER_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/scribe",
            **PINNED,
        }
        if poll_seconds is not None:
            env["SCRIBE_RUNNER_POLL_SECONDS"] = str(poll_seconds)
        settings = settings_for(env)
        env.update(settings.prefect_env())
        os.environ.update(env)
        return cls(data, suffix, pg_port, env, settings)

    def start(self) -> None:
        """Start Kafka, Milvus Lite, PostgreSQL and Prefect; create the ledger database."""
        self.stack = EmbeddedStack(self.settings, postgres_port=self.postgres_port)
        self.stack.start()
        asyncio.run(create_database(self.postgres_port, "scribe"))

    def services(self) -> dict[str, int]:
        """Process ids of the running services by name."""
        if self.stack is None:
            return {}
        return {p.name: p.proc.pid for p in self.stack.processes if p.proc is not None}

    def scenario(self, name: str) -> tuple[dict[str, str], Settings]:
        """Environment and settings of one scenario: own topics, group, alias, deployment."""
        tag = f"{name}-{self.suffix}"
        under = tag.replace("-", "_")
        env = {
            **self.env,
            "SCRIBE_TOPIC_EVENTS": f"bench-{tag}",
            "SCRIBE_TOPIC_EMBEDDINGS": f"bench-{tag}.embeddings",
            "SCRIBE_TOPIC_DLQ": f"bench-{tag}.dlq",
            "SCRIBE_TOPIC_FAILURES": f"bench-{tag}.failures",
            "SCRIBE_WORKER_METRICS_PORT": str(free_port()),
            "SCRIBE_RUNNER_METRICS_PORT": str(free_port()),
            "SCRIBE_APP_ID": f"bench-{tag}",
            "SCRIBE_MILVUS_COLLECTION": f"bench_{under}",
            "SCRIBE_DEPLOYMENT": f"novel-processing/bench-{tag}",
            "SCRIBE_WORK_POOL": f"bench-{tag}",
        }
        return env, settings_for(env)

    def child(self, name: str, args: list[str], env: dict[str, str]) -> ManagedProcess:
        """A ``python -m streams.cli ...`` child with its log under the data dir."""
        proc = ManagedProcess(
            name,
            [sys.executable, "-m", "streams.cli", *args],
            self.data_dir / "logs" / f"{name}.log",
            env=env,
        )
        self.children.append(proc)
        return proc

    def close(self) -> None:
        """Stop every child and service (newest first); drop the data dir unless kept."""
        try:
            while self.children:
                self.children.pop().stop()
        finally:
            if self.stack is not None:
                self.stack.stop()
            if not self.keep_data:
                shutil.rmtree(self.data_dir, ignore_errors=True)
