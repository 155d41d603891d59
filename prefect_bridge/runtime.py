"""What a flow run needs at run time, built once per process by the wiring layer.

``prefect_bridge`` must not import ``streams`` (imports flow one way), so the wiring
layer installs a factory with :func:`configure`; the flow asks :func:`get_runtime`.
In a process-per-run worker the deployment's entrypoint module does the ``configure``;
in a long-lived runner it is done once and the embedder stays loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefect_bridge.chunking import CHUNKER_VERSION, ChunkingPolicy
from prefect_bridge.embedding import Embedder
from prefect_bridge.publisher import ResultPublisher
from prefect_bridge.timeouts import Timeouts
from schemas import ConfigurationError


@dataclass(frozen=True)
class FlowRuntime:
    """Ports and policy of the processing flow."""

    embedder: Embedder
    publisher: ResultPublisher
    policy: ChunkingPolicy
    max_text_bytes: int
    timeouts: Timeouts | None = None

    @property
    def pipeline_version(self) -> str:
        """Changes whenever chunking or the model changes the output for the same input."""
        return pipeline_version(self.embedder.name, self.policy)


def pipeline_version(model: str, policy: ChunkingPolicy) -> str:
    """``<chunker>-<target>-<overlap>:<model>``; part of every idempotency key."""
    return f"{CHUNKER_VERSION}-{policy.target_tokens}-{policy.overlap_tokens}:{model}"


_factory: Callable[[], FlowRuntime] | None = None
_runtime: FlowRuntime | None = None


def configure(factory: Callable[[], FlowRuntime]) -> None:
    """Install the factory that builds the runtime on first use (idempotent per process)."""
    global _factory, _runtime
    _factory = factory
    _runtime = None


def get_runtime() -> FlowRuntime:
    """The process-wide runtime; built on first call."""
    global _runtime
    if _runtime is None:
        if _factory is None:
            raise ConfigurationError(
                "no flow runtime configured: deploy with the entrypoint "
                "'streams.flow_entry:novel_processing' or call prefect_bridge.runtime.configure"
            )
        _runtime = _factory()
    return _runtime
