"""How ``scribe status`` shows a report, and the report it keeps for the next call."""

from __future__ import annotations

import json
from typing import Any

from streams.settings import Settings


def load_previous(settings: Settings) -> dict[str, Any] | None:
    """The last report written by ``scribe status`` in this data dir."""
    path = settings.data_dir / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def save(settings: Settings, report: dict[str, Any]) -> None:
    """Keep the report for the next comparison."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "status.json").write_text(json.dumps(report))


def render(report: dict[str, Any], console: Any) -> None:
    """Human-readable tables of a report."""
    from rich.table import Table

    kafka = report.get("kafka", {})
    table = Table(
        "topic", "partition", "committed", "end", "lag", title=f"group {kafka.get('group')}"
    )
    for p in kafka.get("partitions", []):
        table.add_row(
            p["topic"], str(p["partition"]), str(p["committed"]), str(p["end"]), str(p["lag"])
        )
    console.print(table)
    console.print(f"dead letters: {kafka.get('dlq_size', '?')}")
    prefect = report.get("prefect", {})
    console.print(
        f"flow runs of {prefect.get('deployment')}: {prefect.get('runs')} "
        f"(failed in the last hour: {prefect.get('failed_last_hour')})"
    )
    ledger = report.get("ledger", {})
    console.print(f"chapters: {ledger.get('counts')}")
    for f in ledger.get("failed", []):
        console.print(
            f"  failed {f['novel_id']}/{f['chapter_id']}@v{f['version']} "
            f"run {f['flow_run_id']}: {f['error']}"
        )
    index = report.get("index", {})
    if "rows" in index:
        console.print(
            f"index: {index['alias']} -> {index['collection']}, model {index['model']}, "
            f"{index['rows']} rows (the ledger says {index['expected_rows']})",
            soft_wrap=True,
        )
    for w in kafka.get("results_waiting", []):
        console.print(
            f"results waiting on partition {w['partition']}: {w['lag']}, "
            f"the oldest written {w['oldest_at'] or '(not read)'}",
            soft_wrap=True,
        )
    for name in ("kafka", "prefect", "ledger", "index"):
        if "error" in report.get(name, {}):
            console.print(f"{name}: {report[name]['error']}", style="red", markup=False)
    issues = report.get("problems", [])
    if not issues:
        console.print("healthy", style="green")
        return
    console.print("unhealthy:", style="red")
    for issue in issues:  # one line each, unwrapped: the repair's command stays whole
        console.print(f"  {issue}", style="red", markup=False, soft_wrap=True)
