"""The CLI's offline commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streams.cli import app, sample_path


def test_schemas_export_writes_the_event_and_result_schemas(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    events = json.loads((tmp_path / "out" / "novel-events.v1.schema.json").read_text())
    text = json.dumps(events)
    for event_type in ("chapter.created", "chapter.updated", "chapter.deleted", "novel.deleted"):
        assert event_type in text
    results = json.loads((tmp_path / "out" / "novel-events.embeddings.v1.schema.json").read_text())
    assert "chapter.embedded" in json.dumps(results)


def test_bundled_sample_is_packaged_with_its_license() -> None:
    assert sample_path().is_file()
    assert (sample_path().parent / "LICENSE-shu.txt").is_file()
    assert sample_path().read_text(encoding="utf-8").count("回") >= 10


def test_help_lists_the_commands() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    for command in ("dev", "worker", "produce", "search", "flows", "schemas", "topics"):
        assert command in out


#: Arguments that let a command get past its argument parsing (a new command that needs
#: some fails the test below with a usage error until it is listed here).
COMMAND_ARGS: dict[tuple[str, ...], list[list[str]]] = {
    ("flows", "serve"): [["--warm"], ["--process"]],
    ("produce",): [["{sample}", "--limit", "1"]],
    ("schemas", "export"): [["{tmp}/schemas"]],
    ("dlq", "show"): [["0:0"]],
    ("dlq", "redrive"): [["--all"]],
    ("index", "drop"): [["nothing"]],
    ("search",): [["如意金箍棒"]],
    ("dev",): [["--sample"]],
}
#: Long-running commands that call no Prefect, and the line they print once up: the test
#: stops them there.
READY_LINES = {("serve",): "search page:"}
#: Commands whose first act is to call Prefect: the stand-in server must be asked.
PREFECT_COMMANDS = {
    ("flows", "serve"),
    ("flows", "deploy"),
    ("flows", "automations"),
    ("status",),
    ("exporter",),
}


def command_paths() -> list[tuple[str, ...]]:
    """Every leaf command of the ``scribe`` tree (new commands are picked up by themselves)."""
    import typer.main

    def walk(group: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):  # a group (Typer vendors its own click)
                found += walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))
        return found

    return walk(typer.main.get_command(app), ())


def _invocations() -> list[tuple[str, ...]]:
    return [(*path, *args) for path in command_paths() for args in COMMAND_ARGS.get(path, [[]])]


#: Run in the fresh interpreter: report the environment Prefect is first imported with,
#: then run ``python -m streams.cli ARGS`` exactly as ``scribe dev`` starts its children.
_SPY = """
import os, runpy, sys
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "prefect":
            sys.meta_path.remove(self)
            url = os.environ.get("PREFECT_API_URL", "<unset>")
            sys.stderr.write(f"\\nSPY prefect imported with PREFECT_API_URL={url}\\n")
        return None
sys.meta_path.insert(0, Spy())
sys.argv = ["scribe", *sys.argv[1:]]
runpy.run_module("streams.cli", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, list[str]]]:
    """A stand-in Prefect API that records the paths asked for and answers 503."""
    import http.server
    import threading

    paths: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            paths.append(self.path)
            self.send_response(503)
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api", paths
    finally:
        server.shutdown()


@pytest.mark.parametrize("argv", _invocations(), ids=" ".join)
def test_no_command_imports_prefect_before_its_environment_is_set(
    argv: tuple[str, ...], stand_in: tuple[str, list[str]], tmp_path: Path
) -> None:
    """``SCRIBE_PREFECT_API_URL`` alone must reach Prefect, whose settings are read at import.

    Each command runs in a fresh interpreter (here Prefect is imported already) with only
    scribe's settings: Prefect, if the command imports it at all, must be imported with
    the configured API URL, no throwaway server may start, and the commands that call
    Prefect must reach the stand-in server (without the export before the import, Prefect
    has no API URL and never calls it). Kafka and Milvus point at closed ports.
    """
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from streams.embedded.processes import free_port

    api_url, paths = stand_in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCRIBE_"))}
    env |= {
        "SCRIBE_PREFECT_API_URL": api_url,
        "SCRIBE_DATA_DIR": str(tmp_path / "data"),
        "SCRIBE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SCRIBE_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "SCRIBE_WORKER_METRICS_PORT": "0",
        "SCRIBE_RUNNER_METRICS_PORT": "0",
        "SCRIBE_EXPORTER_PORT": str(free_port()),
        "PREFECT_CLIENT_MAX_RETRIES": "0",
    }
    args = [a.replace("{tmp}", str(tmp_path)).replace("{sample}", str(sample_path())) for a in argv]
    before = len(paths)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SPY, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    calls_prefect = _command_of(argv) in PREFECT_COMMANDS
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        # A long-running command (a runner, the worker) has shown all there is to see once
        # it imported Prefect and called the stand-in: stop it then, not after 90 s.
        spied = any(line.startswith("SPY prefect imported") for line in list(lines))
        if calls_prefect and spied and len(paths) > before:
            time.sleep(0.5)  # what it prints right after the call (a temporary server)
            break
        ready = READY_LINES.get(_command_of(argv))
        if ready is not None and any(ready in line for line in list(lines)):
            time.sleep(0.5)
            break
        time.sleep(0.2)
    if proc.poll() is None:  # still running (waiting on Kafka or Milvus, or serving)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(10)
    output = "".join(lines)
    assert "No such command" not in output and "Missing argument" not in output, output[-2000:]
    assert "Starting temporary server" not in output, output[-3000:]
    imports = [line for line in output.splitlines() if line.startswith("SPY prefect imported")]
    assert imports in ([], [f"SPY prefect imported with PREFECT_API_URL={api_url}"]), output[-3000:]
    if _command_of(argv) in PREFECT_COMMANDS:
        assert imports, output[-3000:]
        assert len(paths) > before, (argv, output[-3000:])
        assert all(p.startswith("/api/") for p in paths)


def _command_of(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command path at the start of ``argv``."""
    paths = set(command_paths())
    for n in (2, 1):
        if tuple(argv[:n]) in paths:
            return tuple(argv[:n])
    raise AssertionError(f"no command in {argv}")


def _scribe(cwd: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    """``scribe ARGS`` in a fresh interpreter with only ``env_extra`` of scribe's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIBE_", "PREFECT_"))}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=cwd,
        env={**env, **env_extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_service_away_ends_a_command_with_one_line_and_exit_75(tmp_path: Path) -> None:
    """The chaos run's operator commands (``scribe replay`` with Milvus paused) ended in a
    page of traceback, and a fresh checkout warned about Prefect's home on every command.
    Now: one line saying what and that it is retriable, exit 75 (EX_TEMPFAIL), no warning."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _scribe(tmp_path, "search", "悟空", SCRIBE_MILVUS_URI=f"http://127.0.0.1:{port}")
    assert done.returncode == 75, done.stderr
    assert "VectorStoreError" in done.stderr and "run it again" in done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr, done.stderr
    assert "Prefect home" not in done.stderr, done.stderr
    assert (tmp_path / ".scribe" / "prefect").is_dir()


@pytest.mark.parametrize("case", ["missing", "directory", "gbk"])
def test_produce_refuses_an_unreadable_file_in_one_line(tmp_path: Path, case: str) -> None:
    """``scribe produce`` of a path that is not there, a directory, or a novel saved as GBK
    (common for Chinese text files) printed a page of traceback. Now one line that says
    what is wrong, exit 1, before any service is contacted."""

    target = tmp_path / "novel.txt"
    if case == "directory":
        target.mkdir()
    elif case == "gbk":
        target.write_bytes("第一回 灵根育孕源流出\n花果山，水帘洞。".encode("gbk"))
    done = _scribe(tmp_path, "produce", str(target))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr, done.stderr
    assert str(target) in done.stderr, done.stderr
    if case == "gbk":
        assert "UTF-8" in done.stderr, done.stderr
