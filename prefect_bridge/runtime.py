"""What a flow run needs at run time, bound to the event loop that runs it.

``prefect_bridge`` must not import ``streams`` (imports flow one way), so the wiring
layer installs a factory with :func:`configure`; the flow asks :func:`get_runtime`.
In a process-per-run worker the deployment's entrypoint module does the ``configure``;
in a long-lived runner it is done once and the embedder stays loaded.

A runtime holds connections (the Kafka producer of its publisher) that belong to one
event loop: used from another loop they hang or fail. So :func:`get_runtime` returns
the runtime of the *running* loop, built by the factory on first use in that loop, and
the runtime is closed with its loop: by :func:`close_runtime` where the loop's owner
says so (the warm runner when its ``main()`` ends), and otherwise when the loop shuts
down its async generators (``asyncio.run`` does). A runner that restarts its loop gets a
fresh producer; what may be shared across loops (the loaded model) is the factory's to
share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from prefect_bridge.chunking import CHUNKER_VERSION, ChunkingPolicy
from prefect_bridge.embedding import Embedder
from prefect_bridge.event_source import EventSource
from prefect_bridge.publisher import ResultPublisher
from prefect_bridge.timeouts import Timeouts
from prefect_bridge.vector_reuse import VectorLookup
from schemas import ConfigurationError

log = logging.getLogger("scribe.runtime")

#: Seconds a runtime may take to close (flush and stop its producer) when its loop ends.
CLOSE_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class FlowRuntime:
    """Ports and policy of the processing flow, for one event loop."""

    embedder: Embedder
    publisher: ResultPublisher
    policy: ChunkingPolicy
    max_text_bytes: int
    timeouts: Timeouts | None = None
    #: The vector index port of the flow (typed by the flow's own Protocol; unset: none).
    vectors: VectorLookup | None = None
    #: Reads the input event from Kafka by its position (the text is not a parameter).
    events: EventSource | None = None

    @property
    def pipeline_version(self) -> str:
        """Changes whenever chunking or the model changes the output for the same input."""
        return Pipeline(self.embedder.name, self.embedder.dimension, self.policy).version


@dataclass(frozen=True)
class Pipeline:
    """What a chapter's result depends on besides its text: the model (its name and
    vector size) and the chunking policy. The one owner of the pipeline version: the
    flow's results, the worker's idempotency keys and a replay's version all read it."""

    model: str
    dimension: int
    policy: ChunkingPolicy

    @property
    def version(self) -> str:
        """See :func:`pipeline_version`."""
        return pipeline_version(self.model, self.policy)


def pipeline_version(model: str, policy: ChunkingPolicy) -> str:
    """``<chunker>-<target>-<max>-<overlap>:<model>``; part of every idempotency key.

    Every field of the chunking policy changes the chunks of some input, so every one is
    in the version.
    """
    return (
        f"{CHUNKER_VERSION}-{policy.target_tokens}-{policy.max_tokens}-"
        f"{policy.overlap_tokens}:{model}"
    )


#: Builds a runtime for the running loop; may share loop-independent parts (the model).
RuntimeFactory = Callable[[], FlowRuntime]


@dataclass
class _Bound:
    runtime: FlowRuntime
    guard: AsyncGenerator[None, None] | None


_lock = threading.Lock()
_factory: RuntimeFactory | None = None
_bound: dict[asyncio.AbstractEventLoop, _Bound] = {}


def configure(factory: RuntimeFactory) -> None:
    """Install the factory that builds the runtime of each event loop on first use.

    Runtimes built by an earlier factory are forgotten here and closed with their loops.
    """
    global _factory
    with _lock:
        _factory = factory
        _bound.clear()


def get_runtime() -> FlowRuntime:
    """The runtime of the running event loop; built on first call in that loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "get_runtime() is called inside the event loop that runs the flow: "
            "its connections belong to that loop"
        ) from None
    with _lock:
        bound = _bound.get(loop)
        if bound is not None:
            return bound.runtime
        if _factory is None:
            raise ConfigurationError(
                "no flow runtime configured: deploy with the entrypoint "
                "'streams.flow_entry:novel_processing' or call prefect_bridge.runtime.configure"
            )
        for dead in [other for other in _bound if other.is_closed()]:
            del _bound[dead]  # closed without shutting down its generators: nothing to await
        runtime = _factory()
        _bound[loop] = _Bound(runtime, _close_with_loop(runtime))
        return runtime


async def close_runtime() -> None:
    """Close the running loop's runtime, if it has one (the loop's owner calls this last)."""
    loop = asyncio.get_running_loop()
    with _lock:
        bound = _bound.pop(loop, None)
    if bound is not None and bound.guard is not None:
        await bound.guard.aclose()  # its finally closes the runtime
    elif bound is not None:
        await _close(bound.runtime)


async def _close(runtime: FlowRuntime) -> None:
    try:
        await asyncio.wait_for(runtime.publisher.close(), CLOSE_TIMEOUT_SECONDS)
        if runtime.events is not None:
            await asyncio.wait_for(runtime.events.close(), CLOSE_TIMEOUT_SECONDS)
        if runtime.vectors is not None:
            await asyncio.wait_for(asyncio.to_thread(runtime.vectors.close), CLOSE_TIMEOUT_SECONDS)
    except Exception as exc:  # closing is best effort: the loop is ending anyway
        log.warning("flow runtime not closed cleanly: %s", exc)


def _close_with_loop(runtime: FlowRuntime) -> AsyncGenerator[None, None] | None:
    """An async generator parked at its first ``yield`` in the running loop.

    asyncio finalises the async generators of a loop when the loop shuts down
    (``loop.shutdown_asyncgens()``, called by ``asyncio.run``), which runs this one's
    ``finally`` and closes the runtime in its own loop, whoever owns the loop.
    """

    async def guard() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await _close(runtime)

    agen = guard()
    try:
        agen.asend(None).send(None)  # runs to the yield; the loop's hook registers agen
    except StopIteration:
        return agen
    return None  # pragma: no cover - a generator that yields always stops the step
