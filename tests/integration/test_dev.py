"""A real ``scribe dev --sample`` in a subprocess (its own services, free ports, temp dir).

It runs Prefect on its private PostgreSQL, serves the search page, produces the sample once
(a second start says the sample is there already), and brings back a service killed with
-9, saying so. A real Prometheus (Debian's ``prometheus``) scrapes its worker, runner and
exporter with compose's alert rules loaded, and answers every query of the dashboard.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.embedded.processes import free_port, port_open
from tests.unit.test_alert_rules import PROMETHEUS, alert_rules, dashboard_queries


class Dev:
    """One ``scribe dev --sample`` process and its output."""

    def __init__(self, data: Path, env: dict[str, str], name: str) -> None:
        self.out = data / f"{name}.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "dev", "--sample"],
            env=env,
            stdout=self.out.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def text(self) -> str:
        """Everything it printed so far."""
        return self.out.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        """Until ``needle`` is printed; fail with the output if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            assert self.proc.poll() is None, f"scribe dev exited:\n{self.text()[-4000:]}"
            time.sleep(0.5)
        raise AssertionError(f"{needle!r} not printed in {timeout:.0f}s:\n{self.text()[-4000:]}")

    def stop(self) -> None:
        """Ctrl-C, as a user would; kill the group if it does not end."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _wait_for_page(url: str, dev: Dev, timeout: float = 120) -> None:
    """The search page that ``scribe dev`` serves answers (its model loads first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as page:
                assert page.status == 200 and 'id="q"' in page.read().decode()
                return
        except OSError:
            assert dev.proc.poll() is None, dev.text()[-4000:]
            assert time.monotonic() < deadline, f"{url} never answered:\n{dev.text()[-4000:]}"
            time.sleep(1)


def _milvus_pid(data: Path) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"milvus-lite") for a in argv) and str(data).encode() in b" ".join(argv):
            return int(cmdline.parent.name)
    raise AssertionError("no Milvus Lite process of this scribe dev")


class Prometheus:
    """A real Prometheus on a free port, scraping ``scribe dev`` every second with the
    alert rules of compose/prometheus/alerts.yml."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install prometheus (scripts/bootstrap)"
        home = data / "prometheus"
        home.mkdir()
        shutil.copy(PROMETHEUS / "alerts.yml", home / "alerts.yml")
        jobs = {
            "scribe-worker": env["SCRIBE_WORKER_METRICS_PORT"],
            "scribe-runner": env["SCRIBE_RUNNER_METRICS_PORT"],
            "scribe-exporter": env["SCRIBE_EXPORTER_PORT"],
        }
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in jobs.items()
        )
        (home / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - alerts.yml\nscrape_configs:\n{scrape}"
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = home / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``; fails on an error answer."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def until(self, what: str, check: Any, timeout: float = 120) -> Any:
        """Poll ``check()`` until it returns something true; fail with the log if not."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                last = check()
            except OSError as exc:  # not listening yet
                last = exc
            else:
                if last:
                    return last
            time.sleep(1)
        raise AssertionError(f"{what}: never true, last {last!r}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _prometheus_scrapes_it(data: Path, env: dict[str, str]) -> None:
    """Issue 22: a real Prometheus scrapes the worker, the runner and the exporter; the
    exporter reads every section; the alert rules evaluate; the dashboard's queries run."""
    prometheus = Prometheus(data, env)
    try:

        def targets_up() -> bool:
            active = prometheus.api("targets")["activeTargets"]
            return len(active) == 3 and all(t["health"] == "up" for t in active)

        prometheus.until("worker, runner and exporter scraped", targets_up)

        def value(query: str) -> list[tuple[dict[str, str], float]]:
            found = prometheus.api("query", query=query)["result"]
            return [(r["metric"], float(r["value"][1])) for r in found]

        sections = prometheus.until(
            "every section read", lambda: [v for v in value("scribe_status_up") if v[1] == 1]
        )
        assert {m["section"] for m, _ in sections} == {"kafka", "prefect", "ledger", "index"}
        prometheus.until(
            "the worker counted the sample's events",
            lambda: sum(v for _, v in value("scribe_events_consumed_total")) >= 10,
            timeout=300,
        )
        assert value("scribe_chapters"), "the ledger's chapters by status"
        assert value('scribe_group_lag{topic="novel-events"}'), "lag per partition"

        def rules_evaluated() -> list[dict[str, Any]]:
            rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else []

        rules = prometheus.until("every alert rule evaluated without error", rules_evaluated)
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
        for title, query in dashboard_queries():
            prometheus.api("query", query=query)  # an error answer fails here
            assert title
    finally:
        prometheus.stop()


@pytest.fixture
def dev_env() -> Iterator[tuple[Path, dict[str, str]]]:
    """A private data dir and free ports; no SCRIBE_/PREFECT_ settings of the caller."""
    data = Path(tempfile.mkdtemp(prefix="scribe-dev-"))
    os.chmod(data, 0o755)  # PostgreSQL runs as its own user and must reach it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIBE_", "PREFECT_"))}
    env |= {
        "SCRIBE_DATA_DIR": str(data / "scribe"),
        "SCRIBE_KAFKA_PORT": str(free_port()),
        "SCRIBE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SCRIBE_PREFECT_PORT": str(free_port()),
        "SCRIBE_MILVUS_PORT": str(free_port()),
        "SCRIBE_WORKER_METRICS_PORT": str(free_port()),
        "SCRIBE_RUNNER_METRICS_PORT": str(free_port()),
        "SCRIBE_SEARCH_PORT": str(free_port()),
        "SCRIBE_EXPORTER_PORT": str(free_port()),
        "SCRIBE_EXPORTER_INTERVAL_SECONDS": "3",
        # What this test proves (supervision, the sample produced once, search, metrics)
        # needs the sample consumed, not embedded: with every sample event in flight at
        # once, the worker takes all 10 without waiting for runs, and one slot on one
        # core keeps the embedding in the background off the suite's other workers.
        "SCRIBE_MAX_IN_FLIGHT": "10",
        "SCRIBE_RUNNER_LIMIT": "1",
        "SCRIBE_EMBED_THREADS": "1",
        "COLUMNS": "400",  # rich wraps at 80 columns without a terminal
    }
    try:
        yield data, env
    finally:
        if os.environ.get("SCRIBE_KEEP_TEST_DATA") != "1":
            shutil.rmtree(data, ignore_errors=True)


def test_dev_supervises_its_services_and_produces_the_sample_once(
    dev_env: tuple[Path, dict[str, str]],
) -> None:
    data, env = dev_env
    milvus_port = int(env["SCRIBE_MILVUS_PORT"])
    first = Dev(data, env, "first")
    try:
        first.wait_for("ready.", 300)
        out = first.text()
        assert "Prefect's database: PostgreSQL on 127.0.0.1:" in out, out
        assert "sent 10 sample events" in out, out
        search = f"http://127.0.0.1:{env['SCRIBE_SEARCH_PORT']}/"
        assert f"Search:     {search}" in out, out
        _wait_for_page(search, first)
        metrics = [
            f"http://127.0.0.1:{env[f'SCRIBE_{name}_PORT']}/metrics"
            for name in ("WORKER_METRICS", "RUNNER_METRICS", "EXPORTER")
        ]
        assert f"Metrics:    {' '.join(metrics)}" in out, out
        _prometheus_scrapes_it(data, env)

        pid = _milvus_pid(data)
        os.kill(pid, signal.SIGKILL)
        first.wait_for("milvus was killed by SIGKILL; restarting it (log: ", 30)
        assert str(data / "scribe" / "logs" / "milvus.log") in first.text()
        deadline = time.monotonic() + 60
        while not port_open(milvus_port):
            assert time.monotonic() < deadline, "Milvus Lite did not come back"
            time.sleep(0.5)
        assert _milvus_pid(data) != pid
    finally:
        first.stop()
    assert first.proc.returncode == 0, first.text()[-3000:]

    second = Dev(data, env, "second")
    try:
        second.wait_for("ready.", 300)
        out = second.text()
        assert "the sample is on novel-events already (10 events); not producing it again" in out
        assert "sent 10" not in out
    finally:
        second.stop()
    prefect_log = (data / "scribe" / "logs" / "prefect.log").read_text(errors="replace")
    assert "database is locked" not in prefect_log
