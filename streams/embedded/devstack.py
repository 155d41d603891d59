"""``scribe dev``: the embedded stack plus the worker and the runner, supervised."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import Progress

from streams.embedded.processes import ManagedProcess, free_port
from streams.embedded.stack import EmbeddedStack, postgres_available
from streams.settings import Settings
from streams.topics import ensure_scribe_topics

#: Novel id under which ``scribe dev --sample`` produces the bundled sample.
SAMPLE_NOVEL = "xiyouji"


def app_processes(settings: Settings) -> list[ManagedProcess]:
    """``scribe flows serve``, ``scribe worker``, ``scribe serve`` and ``scribe exporter``
    as child processes."""
    logs = settings.data_dir / "logs"
    env = settings.prefect_env()
    return [
        ManagedProcess(
            "runner",
            [sys.executable, "-m", "streams.cli", "flows", "serve", "--warm"],
            logs / "runner.log",
            env=env,
        ),
        ManagedProcess(
            "worker", [sys.executable, "-m", "streams.cli", "worker"], logs / "worker.log", env=env
        ),
        ManagedProcess(
            "search", [sys.executable, "-m", "streams.cli", "serve"], logs / "search.log", env=env
        ),
        ManagedProcess(
            "exporter",
            [sys.executable, "-m", "streams.cli", "exporter"],
            logs / "exporter.log",
            env=env,
        ),
    ]


def _metrics_urls(settings: Settings) -> str:
    """Where Prometheus scrapes ``scribe dev``: worker, runner and exporter."""
    ports = (settings.worker_metrics_port, settings.runner_metrics_port, settings.exporter_port)
    return " ".join(f"http://{settings.metrics_host}:{p}/metrics" for p in ports if p)


def exit_reason(returncode: int | None) -> str:
    """``exited with 3`` / ``was killed by SIGKILL`` for a Popen return code."""
    if returncode is None:
        return "is gone"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with {returncode}"


class Supervisor:
    """Keeps every process ``scribe dev`` started alive: services, runner and worker.

    :meth:`check` restarts each process found dead and says so (which, why, its log).
    A process that dies again soon after a restart waits longer before the next one
    (2 s doubling to 60 s), so a process that cannot start does not spin.
    """

    def __init__(
        self,
        processes: Callable[[], Sequence[ManagedProcess]],
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._processes = processes
        self._say = say
        self._clock = clock
        self._delay: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._started: dict[str, float] = {}
        #: Restarts made so far, per process name.
        self.restarts: dict[str, int] = {}

    def check(self) -> list[str]:
        """Restart the dead processes whose back-off has passed; return their names."""
        now = self._clock()
        restarted = []
        for proc in self._processes():
            if proc.running or proc.proc is None:
                continue  # alive, or stopped on purpose
            if now < self._not_before.get(proc.name, 0.0):
                continue
            reason = exit_reason(proc.proc.returncode)
            if now - self._started.get(proc.name, -1e9) > 60.0:
                self._delay[proc.name] = 2.0  # it had been up a while: restart at once
            delay = self._delay.get(proc.name, 2.0)
            self._say(f"{proc.name} {reason}; restarting it (log: {proc.log_path})")
            proc.start()
            self._started[proc.name] = now
            self._not_before[proc.name] = now + delay
            self._delay[proc.name] = min(delay * 2, 60.0)
            self.restarts[proc.name] = self.restarts.get(proc.name, 0) + 1
            restarted.append(proc.name)
        return restarted


def produce_sample(
    settings: Settings, sample: Path, console: Console, *, topic_is_new: bool = False
) -> None:
    """Produce the sample unless the input topic holds its events already; say which.

    A topic created by this start holds nothing: it is not read first.
    """
    from streams.commands.producing import produce_file

    done = asyncio.run(
        produce_file(
            settings,
            sample,
            SAMPLE_NOVEL,
            1,
            None,
            Progress(console=console),
            skip_present=not topic_is_new,
        )
    )
    if done.sent == 0:
        console.print(
            f"the sample is on {settings.topic_events} already ({done.already_there} events); "
            "not producing it again"
        )
    elif done.already_there:
        console.print(
            f"sent {done.sent} sample events to {settings.topic_events} "
            f"({done.already_there} were there already)"
        )
    else:
        console.print(f"sent {done.sent} sample events to {settings.topic_events}")


def embedded_stack(settings: Settings, console: Console) -> EmbeddedStack:
    """The stack of ``scribe dev``: Prefect on a private PostgreSQL cluster when it can.

    SQLite locks under concurrent submissions ("database is locked" from the server's
    services); PostgreSQL does not. Where PostgreSQL's binaries are missing, Prefect falls
    back to SQLite in the data dir, with a note.
    """
    wants_postgres = settings.prefect_api_url is None and settings.prefect_database_url is None
    if wants_postgres and not postgres_available():
        console.print(
            "[yellow]note:[/] PostgreSQL's binaries (initdb, postgres) are not installed: "
            "Prefect runs on SQLite, which may log 'database is locked' under load "
            "(apt-get install postgresql, or run scripts/bootstrap)"
        )
        wants_postgres = False
    return EmbeddedStack(settings, postgres_port=free_port() if wants_postgres else None)


def run_dev(settings: Settings, sample: Path | None, console: Console) -> int:
    """Start everything, keep every process alive, stop it all on Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = embedded_stack(settings, console)
    children = app_processes(settings)
    supervisor = Supervisor(
        lambda: [*stack.processes, *children], lambda line: console.print(f"[yellow]{line}")
    )
    try:
        console.print("[bold]starting Kafka, Milvus Lite and Prefect on 127.0.0.1 ...")
        stack.start()
        console.print(f"Prefect's database: {stack.prefect_database}")
        created = asyncio.run(ensure_scribe_topics(settings))
        for child in children:
            child.start()
        if sample is not None:
            produce_sample(settings, sample, console, topic_is_new=settings.topic_events in created)
        console.print(  # one address a line: a narrow terminal does not split one
            f"[green]ready.[/]\n  Prefect UI: {settings.prefect_ui_url}/runs\n"
            f"  Search:     http://{settings.search_host}:{settings.search_port}/\n"
            f"  Kafka:      {settings.bootstrap_servers}\n  Milvus:     {settings.milvus_url}\n"
            f"  Metrics:    {_metrics_urls(settings)}",
            soft_wrap=True,
        )
        console.print(f"logs in {settings.data_dir / 'logs'}; Ctrl-C stops everything.")
        while not stop.wait(2.0):
            supervisor.check()
        return 0
    finally:
        console.print("stopping ...")
        for child in reversed(children):
            child.stop()
        stack.stop()
