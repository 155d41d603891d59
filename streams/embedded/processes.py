"""Starting and stopping local service processes (for the embedded stack and the tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from schemas import ServiceUnavailable


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    """Poll ``check`` until it is true or raise :class:`ServiceUnavailable` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ServiceUnavailable(f"{what} not ready after {timeout:.0f}s")


@dataclass
class ManagedProcess:
    """One child process in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_signals: tuple[int, ...] = (signal.SIGTERM,)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process with ``env`` added to this process's environment."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceUnavailable(
                f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        """Last lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """Signal the process group (each stop signal in turn), then kill it."""
        if self.proc is None:
            return
        for sig in self.stop_signals:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout / len(self.stop_signals))
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


def child_pids(parent: int) -> list[int]:
    """Direct children of ``parent`` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def terminate_children(grace: float = 10.0) -> None:
    """SIGTERM this process's children (and their groups), SIGKILL what is left after ``grace``.

    Prefect starts each flow run in a new session, so stopping the runner's own process
    group would leave them behind.
    """
    kids = child_pids(os.getpid())
    for pid in kids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in kids):
        for pid in kids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    for pid in kids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
