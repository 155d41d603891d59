"""Where a chapter's results go: the live index, or the collection a full rebuild builds.

One value instead of a bare ``str | None`` threaded from ``scribe replay`` through the
chapter agent, the flow run, the results topic, the dead letters and the sink. It owns
its encodings, each a plain string on the wire as before: the flow run's ``target``
parameter and the results' ``target`` field (the collection's name, or null for the
live index), the run's ``rebuild:<collection>`` tag and the ``scribe.target`` header of a
parked failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

#: Header of a dead letter or parked failure that names a rebuild's collection.
H_TARGET = "scribe.target"

#: Prefix of the tag that marks a rebuild's flow runs.
REBUILD_TAG = "rebuild:"


@dataclass(frozen=True, slots=True)
class Target:
    """The live index (``collection`` unset: whatever the alias points at when a result is
    applied) or the physical collection a full rebuild writes."""

    collection: str | None = None

    @classmethod
    def of(cls, value: str | None) -> Target:
        """The target a wire value names (a parameter, a field, a header): empty is live."""
        return cls(value or None)

    @property
    def live(self) -> bool:
        """Whether results go to the live index."""
        return self.collection is None

    @property
    def wire(self) -> str | None:
        """The flow parameter's, result field's and header's value: the collection or none."""
        return self.collection

    @property
    def tag(self) -> str | None:
        """The tag of a rebuild's flow runs (``rebuild:<collection>``); none for live ones."""
        return None if self.collection is None else f"{REBUILD_TAG}{self.collection}"

    def header(self) -> list[tuple[str, bytes]]:
        """The ``scribe.target`` header of a parked failure, if a rebuild's."""
        return [] if self.collection is None else [(H_TARGET, self.collection.encode())]

    def __str__(self) -> str:
        return self.collection or "the live index"


#: The live index.
LIVE = Target()


def _from_wire(value: Any) -> Any:
    return Target.of(value) if value is None or isinstance(value, str) else value


#: A model field holding a :class:`Target`, the collection's name or null in JSON.
TargetField = Annotated[
    Target,
    BeforeValidator(_from_wire),
    PlainSerializer(lambda t: t.wire, return_type=str | None),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]}),
]
