"""``scribe dev``: the embedded stack plus the worker and the runner, supervised."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import Progress

from streams.kafka import ensure_topics
from streams.processes import ManagedProcess
from streams.settings import Settings
from streams.stack import EmbeddedStack


def app_processes(settings: Settings) -> list[ManagedProcess]:
    """``scribe flows serve`` and ``scribe worker`` as child processes."""
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
    ]


def run_dev(settings: Settings, sample: Path | None, console: Console) -> int:
    """Start everything, keep the app processes alive, stop it all on Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = EmbeddedStack(settings)
    children = app_processes(settings)
    try:
        console.print("[bold]starting Kafka, Milvus Lite and Prefect on 127.0.0.1 ...")
        stack.start()
        asyncio.run(ensure_topics(settings))
        for child in children:
            child.start()
        if sample is not None:
            from streams.producing import produce_file

            asyncio.run(
                produce_file(settings, sample, "xiyouji", 1, None, Progress(console=console))
            )
        console.print(
            f"[green]ready.[/] Prefect UI: {settings.prefect_ui_url}/runs   "
            f"Kafka: {settings.bootstrap_servers}   Milvus: {settings.milvus_url}"
        )
        console.print(f"logs in {settings.data_dir / 'logs'}; Ctrl-C stops everything.")
        while not stop.wait(2.0):
            for child in children:
                if not child.running:
                    console.print(
                        f"[yellow]{child.name} exited; restarting it (see {child.log_path})"
                    )
                    child.start()
        return 0
    finally:
        console.print("stopping ...")
        for child in reversed(children):
            child.stop()
        stack.stop()
