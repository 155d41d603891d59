"""How a Kafka client reaches the brokers: a small typed value, not the whole ``Settings``.

:class:`KafkaConnection` holds what every aiokafka client and Faust need to connect
(brokers, TLS, SASL, the metadata refresh) and nothing else, as quix-streams'
``ConnectionConfig`` does; the Kafka adapters take it and the values of their own task
(topics, a group, a size limit). :meth:`KafkaConnection.from_settings` builds it from
the application's settings, which this module does not import at run time.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from schemas import ConfigurationError

if TYPE_CHECKING:
    from streams.settings import Settings

#: How the clients talk to the brokers.
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
#: The SASL login mechanisms aiokafka and Faust both speak.
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """What a Kafka client needs to connect: brokers, TLS and SASL, metadata refresh.

    Secrets stay :class:`~pydantic.SecretStr` (hidden in ``repr``) until a client's
    configuration is built. SASL protocols need a username and a password.
    """

    #: Comma-separated ``host:port`` list.
    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: CA bundle to verify the brokers; the client certificate and key for mTLS.
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    #: How often clients refresh partition leaders (defect 28; aiokafka: 300).
    metadata_max_age_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ConfigurationError(f"{self.security_protocol} needs a SASL username and password")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        """The connection the application's settings describe (``SCRIBE_KAFKA_*``)."""
        return cls(
            bootstrap_servers=settings.bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_cafile=settings.kafka_ssl_cafile,
            ssl_certfile=settings.kafka_ssl_certfile,
            ssl_keyfile=settings.kafka_ssl_keyfile,
            ssl_key_password=settings.kafka_ssl_key_password,
            metadata_max_age_seconds=settings.kafka_metadata_max_age_seconds,
        )

    @property
    def metadata_max_age_ms(self) -> int:
        """:attr:`metadata_max_age_seconds` as aiokafka and Faust take it."""
        return int(self.metadata_max_age_seconds * 1000)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL / SASL_SSL, from the CA bundle and optional client cert."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        from aiokafka.helpers import create_ssl_context  # the publisher loads aiokafka late

        password = self.ssl_key_password
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=password.get_secret_value() if password else None,
        )
        return context

    def client_config(self) -> dict[str, Any]:
        """aiokafka connection settings: brokers, TLS and SASL, and how often metadata is
        refreshed (a consumer resetting its position asks the leader it knows, and aiokafka
        does not refresh metadata when that one is no longer the leader: defect 28)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "metadata_max_age_ms": self.metadata_max_age_ms,
        }
        context = self.ssl_context()
        if context is not None:
            config["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked in __post_init__
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return config

    def faust_credentials(self) -> Any:
        """The same security settings as Faust ``broker_credentials`` (None for PLAINTEXT)."""
        import faust

        context = self.ssl_context()
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked in __post_init__
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None
