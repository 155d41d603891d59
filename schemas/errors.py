"""The one error root of scribe-stream.

Every error says whether retrying the same operation can succeed (``retriable``).
Retry and dead-letter decisions read that flag, never the message text.
"""

from __future__ import annotations

from typing import ClassVar


class ScribeError(Exception):
    """Root of every error raised by scribe-stream code."""

    retriable: ClassVar[bool] = False

    @property
    def reason(self) -> str:
        """A readable, one-line reason (safe to put in a header or a log line)."""
        return str(self) or type(self).__name__


# -- input that can never be processed: goes to the dead-letter topic ---------------------


class InvalidEvent(ScribeError):
    """An input message that can never be processed as it is (dead-lettered, not retried)."""


class BadEncoding(InvalidEvent):
    """The message bytes are not valid UTF-8."""


class MalformedJSON(InvalidEvent):
    """The message is not a JSON object."""


class UnknownEventType(InvalidEvent):
    """``event_type`` is missing or names no known event."""


class UnsupportedSchemaVersion(InvalidEvent):
    """``schema_version`` is newer than this build understands, or not an integer."""


class SchemaViolation(InvalidEvent):
    """The event fails validation (missing field, wrong type, bad value)."""


class EventTooLarge(InvalidEvent):
    """The message or its text exceeds the configured size limit."""


class EventUnavailable(ScribeError):
    """The input event a flow run was asked to process is not in the log (deleted by
    retention, or a position that does not exist): retrying cannot bring it back."""


class RecreatedBelowDeletion(ScribeError):
    """A chapter written again after its deletion with a version not above the deleted
    one: newest wins, so it can never reach the index (not retriable; the producer must
    re-create the chapter with a higher version)."""


class ResultTooLarge(ScribeError):
    """A result message would exceed the results topic's size limit (not retriable)."""


# -- services: transient by default --------------------------------------------------------


class ServiceUnavailable(ScribeError):
    """A backing service (Kafka, Prefect, Milvus, the ledger) cannot be reached right now."""

    retriable = True


class FlowSubmissionError(ServiceUnavailable):
    """Prefect did not accept a flow run (yet)."""


class VectorStoreError(ServiceUnavailable):
    """Milvus refused or failed a write or a query."""


class PublishError(ServiceUnavailable):
    """A message could not be written to Kafka."""


class EmbeddingUnavailable(ServiceUnavailable):
    """The embeddings server did not answer, or kept answering 429/5xx."""


class VectorStoreRejected(ScribeError):
    """Milvus answered that the request itself is wrong (a vector of another dimension,
    a value over a field's limit): the same write fails again, so it is not retried."""


class RebuildIncomplete(ScribeError):
    """A full rebuild lacks chapters the live index holds (their runs failed for good):
    it does not switch the alias unless told to (``scribe replay --force``)."""


class ConfigurationError(ScribeError):
    """The configuration or the environment is wrong; retrying will not help."""


class EmbeddingError(ScribeError):
    """The embedder failed on an input (not retriable: the same input fails again)."""
