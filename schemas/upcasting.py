"""Pure functions that bring old event payloads up to the current schema version.

An upcaster takes the JSON object of version ``n`` and returns the object of version
``n + 1``. Input events: version 1 is the first published contract, so ``UPCASTERS`` is
empty today; when version 2 ships, ``UPCASTERS[1]`` turns a v1 payload into a v2 one and
every stored v1 event in Kafka keeps parsing. Results have a version per type:
``RESULT_UPCASTERS[event_type]`` (``chapter.embedded`` v1 -> v2: vectors to base64).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.errors import UnsupportedSchemaVersion
from schemas.events import CURRENT_SCHEMA_VERSION
from schemas.results import RESULT_SCHEMA_VERSIONS, encode_vector

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: Mapping[int, Upcaster] = {}


def embedded_v1_to_v2(payload: Payload) -> Payload:
    """``chapter.embedded`` v1 -> v2: each chunk's JSON float list becomes base64 float32."""
    chunks = payload.get("chunks")
    if isinstance(chunks, list):
        payload["chunks"] = [
            {**c, "vector": encode_vector(c["vector"])}
            if isinstance(c, dict) and _numbers(c.get("vector"))
            else c  # leave anything odd to validation, which names the error
            for c in chunks
        ]
    return payload


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    )


RESULT_UPCASTERS: Mapping[str, Mapping[int, Upcaster]] = {
    "chapter.embedded": {1: embedded_v1_to_v2},
}


def upcast_result(payload: Payload) -> Payload:
    """A results-topic payload at its type's current schema version."""
    event_type = str(payload.get("event_type"))
    return upcast(
        payload,
        current=RESULT_SCHEMA_VERSIONS.get(event_type, 1),
        upcasters=RESULT_UPCASTERS.get(event_type, {}),
    )


def upcast(
    payload: Payload,
    *,
    current: int = CURRENT_SCHEMA_VERSION,
    upcasters: Mapping[int, Upcaster] = UPCASTERS,
) -> Payload:
    """Return ``payload`` at schema version ``current``; raise if that is impossible."""
    version = payload.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UnsupportedSchemaVersion(
            f"schema_version must be a positive integer, got {version!r}"
        )
    if version > current:
        raise UnsupportedSchemaVersion(
            f"schema_version {version} is newer than this build understands ({current})"
        )
    while version < current:
        step = upcasters.get(version)
        if step is None:
            raise UnsupportedSchemaVersion(f"no upcaster from schema_version {version}")
        payload = step(dict(payload))
        version += 1
        payload["schema_version"] = version
    return payload
