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


def test_prefect_commands_talk_to_the_configured_api_with_only_scribe_settings(
    tmp_path: Path,
) -> None:
    """``SCRIBE_PREFECT_API_URL`` alone must reach Prefect, whose settings are read at import.

    Each command runs in a fresh interpreter (here Prefect is imported already) against a
    stand-in server that records the paths asked for; without the export before the
    import, Prefect has no API URL and never calls it.
    """
    import http.server
    import os
    import subprocess
    import sys
    import threading

    paths: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            paths.append(self.path)
            self.send_response(503)
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCRIBE_"))}
    env |= {
        "SCRIBE_PREFECT_API_URL": f"http://127.0.0.1:{server.server_port}/api",
        "SCRIBE_DATA_DIR": str(tmp_path),
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",  # no throwaway server to hide it
        "PREFECT_CLIENT_MAX_RETRIES": "0",
    }
    commands = [["flows", "deploy"], ["flows", "automations"], ["flows", "serve", "--warm"]]
    try:
        for args in commands:
            before = len(paths)
            done = subprocess.run(
                [sys.executable, "-m", "streams.cli", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode != 0  # the stand-in answers 503
            assert len(paths) > before, (args, done.stderr[-2000:])
            assert all(p.startswith("/api/") for p in paths)
    finally:
        server.shutdown()
