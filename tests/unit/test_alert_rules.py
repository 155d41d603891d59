"""The alert rules and the Grafana dashboard of compose/ (issue 22): valid for Prometheus
(``promtool``, from Debian's ``prometheus`` package), each alert unit-tested firing and
quiet, and every query naming only metrics scribe-stream exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import streams.metrics  # noqa: F401  (registers the worker's and runner's metrics)
from streams.commands.status_metrics import StatusGauges

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "compose" / "prometheus"
GRAFANA = ROOT / "compose" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "scribe-stream.json"
#: Series Prometheus makes itself.
BUILTIN = {"up"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run does)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def exported_series() -> set[str]:
    """Every series name the worker, the runner and scribe exporter can expose."""
    names = set(BUILTIN)
    for registry in (REGISTRY, StatusGauges(CollectorRegistry()).registry):
        for family in registry.collect():
            base = family.name
            if family.type == "counter":
                names |= {f"{base}_total", f"{base}_created"}
            elif family.type == "histogram":
                names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"}
            else:
                names.add(base)
    return names


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label values and functions left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_strings = re.sub(r'"[^"]*"', "", without_labels)
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_strings))
    return {w for w in words if w.startswith("scribe_") or w in BUILTIN}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def test_the_rules_and_the_config_are_valid_for_prometheus() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    checks = [c for case in cases for c in case["alert_rule_test"]]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: never tested firing"
        quiet = [c for c in mine if not c.get("exp_alerts")]
        assert quiet or name == "ScribeStatusSectionDown" or name == "ScribeTargetDown", (
            f"{name}: never tested quiet"
        )
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"].get("runbook"), f"{name}: say what to run"


def test_alerts_and_dashboard_name_only_metrics_scribe_exports() -> None:
    known = exported_series()
    queries = [(r["alert"], r["expr"]) for r in alert_rules()] + dashboard_queries()
    for where, expr in queries:
        unknown = series_in(expr) - known
        assert not unknown, f"{where}: {sorted(unknown)} not exported"
    used = {s for _, expr in queries for s in series_in(expr)}
    assert {"scribe_group_lag", "scribe_dlq_messages", "scribe_index_rows"} <= used


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule: ``promtool check rules`` parses it."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]})
    )
    checked = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_provisions_the_dashboard_on_the_prometheus_it_names() -> None:
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    [datasource] = source["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("lag", "runs by state", "pending", "embed", "sink", "dead letters", "index"):
        assert topic in titles, topic
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "scribe.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
