"""Security settings produce the right client configurations (Kafka, Faust, Prefect, Milvus)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from schemas import ConfigurationError
from streams.adapters.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.wiring import vector_store


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scribe-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "client.pem", tmp / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_plaintext_is_the_default_and_has_no_credentials() -> None:
    kafka = KafkaConnection.from_settings(Settings(kafka_bootstrap_servers="k1:9092,k2:9092"))
    config = kafka.client_config()
    assert config == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
        "metadata_max_age_ms": 10_000,
    }
    assert kafka.faust_credentials() is None
    assert KafkaConnection("k1:9092,k2:9092").client_config() == config  # same defaults


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_configures_aiokafka_and_faust_alike(mechanism: str) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="scribe",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
    )
    kafka = KafkaConnection.from_settings(settings)
    config = kafka.client_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == mechanism
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("scribe", "s3cret")
    assert isinstance(config["ssl_context"], ssl.SSLContext)
    creds = kafka.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == mechanism
    assert (creds.username, creds.password) == ("scribe", "s3cret")


def test_sasl_plaintext_has_no_tls() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p"
    )  # type: ignore[arg-type]
    kafka = KafkaConnection.from_settings(settings)
    assert "ssl_context" not in kafka.client_config()
    creds = kafka.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_PLAINTEXT"


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=cert,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
    )
    kafka = KafkaConnection.from_settings(settings)
    context = kafka.client_config()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert isinstance(kafka.faust_credentials(), faust.SSLCredentials)


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ConfigurationError, match="SASL username and password"):
        KafkaConnection("k1:9092", security_protocol="SASL_SSL", sasl_username="u")


def test_secrets_never_show_in_repr_and_reach_their_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIBE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SCRIBE_KAFKA_SASL_USERNAME", "scribe")
    secrets = {
        "SCRIBE_KAFKA_SASL_PASSWORD": "kafka-pw-123",
        "SCRIBE_MILVUS_TOKEN": "root:milvus-tok-456",
        "SCRIBE_PREFECT_API_KEY": "pnu_key_789",
        "SCRIBE_PREFECT_API_AUTH_STRING": "admin:auth-000",
        "SCRIBE_LEDGER_URL": "postgresql://u:ledger-pw@db/scribe",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    kafka = KafkaConnection.from_settings(settings)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(kafka)
    for value in secrets.values():
        assert value not in shown
    env = settings.prefect_env()
    assert env["PREFECT_API_KEY"] == "pnu_key_789"
    assert env["PREFECT_API_AUTH_STRING"] == "admin:auth-000"
    assert kafka.client_config()["sasl_plain_password"] == "kafka-pw-123"
    assert vector_store(settings)._token == "root:milvus-tok-456"


def test_milvus_user_and_password_make_the_login_token() -> None:
    settings = Settings(milvus_user="root", milvus_password="pw-123456")  # type: ignore[arg-type]
    assert settings.milvus_auth == "root:pw-123456"
    assert vector_store(settings)._token == "root:pw-123456"
    assert "pw-123456" not in repr(settings)
    assert Settings().milvus_auth is None  # the embedded Milvus Lite: no login
    with pytest.raises(ValidationError, match="go together"):
        Settings(milvus_user="root")
    with pytest.raises(ValidationError, match="not both"):
        Settings(milvus_user="u", milvus_password="p", milvus_token="u:p")  # type: ignore[arg-type]


def test_scram_sha_512_reaches_every_kafka_client_the_code_builds() -> None:
    """aiokafka producers, consumers and admin clients all take client_config; Faust's
    broker_credentials the same login."""
    from streams.wiring import build_event_source, build_result_publisher

    settings = Settings(
        kafka_bootstrap_servers="kafka:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="runner",
        kafka_sasl_password="runner-pw",  # type: ignore[arg-type]
    )
    expected = {
        "bootstrap_servers": "kafka:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "runner",
        "sasl_plain_password": "runner-pw",
        "metadata_max_age_ms": 10_000,
    }
    kafka = KafkaConnection.from_settings(settings)
    assert kafka.client_config() == expected
    assert build_result_publisher(settings)._config == expected
    assert build_event_source(settings)._config == expected
    creds = kafka.faust_credentials()  # what streams.app passes as broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "runner",
        "runner-pw",
        "SCRAM-SHA-512",
    )


def test_every_kafka_client_refreshes_partition_leaders_as_often_as_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 28: aiokafka resets a consumer's position by asking the leader its metadata
    names and does not refresh that metadata on NotLeaderForPartition, so a leader that
    moved stalls the partition until the metadata's maximum age (aiokafka: 300 s). The
    worker's Faust consumer and producer and every aiokafka client take the setting."""
    import streams.app
    from streams.app import create_app

    monkeypatch.setattr(streams.app, "check_prefect_env", lambda _settings: None)  # no run here
    settings = Settings(kafka_bootstrap_servers="k1:9092", kafka_metadata_max_age_seconds=7)
    assert KafkaConnection.from_settings(settings).client_config()["metadata_max_age_ms"] == 7000
    app = create_app(settings)
    assert app.conf.consumer_metadata_max_age_ms == 7000
    assert app.conf.producer_metadata_max_age_ms == 7000
