"""Pure functions that bring old event payloads up to the current schema version.

An upcaster takes the JSON object of version ``n`` and returns the object of version
``n + 1``. Version 1 is the first published contract, so the table is empty today; when
version 2 ships, ``UPCASTERS[1]`` turns a v1 payload into a v2 one and every stored v1
event in Kafka keeps parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.errors import UnsupportedSchemaVersion
from schemas.events import CURRENT_SCHEMA_VERSION

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: Mapping[int, Upcaster] = {}


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
