"""The CLI's offline commands."""

from __future__ import annotations

import json
from pathlib import Path

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
