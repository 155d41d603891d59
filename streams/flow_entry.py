"""Deployment entrypoint of ``novel-processing``: configures the flow runtime on import.

Prefect's process worker starts each run in a fresh interpreter and imports
``streams.flow_entry:novel_processing``; importing this module installs the factory that
builds the runtime from the ``SCRIBE_`` environment. The factory runs once per event loop
(``prefect_bridge.runtime``): each loop gets its own Kafka publisher, while the embedding
model, loaded on first use, is shared by all of them.
"""

from __future__ import annotations

import threading

from prefect_bridge.embedding import Embedder
from prefect_bridge.flow import novel_processing as _flow
from prefect_bridge.runtime import FlowRuntime, configure
from streams.preload import preload_pymilvus
from streams.settings import Settings
from streams.wiring import build_flow_runtime, flow_timeouts, shared_embedder

_settings = Settings()
_model_lock = threading.Lock()
_model: list[Embedder] = []  # the loaded model: loop-independent, loaded at most once


def load_embedder() -> Embedder:
    """The process's embedding model, loaded on first call (from any thread)."""
    with _model_lock:
        if not _model:
            _model.append(shared_embedder(_settings))
        return _model[0]


def _runtime_for_this_loop() -> FlowRuntime:
    return build_flow_runtime(_settings, embedder=load_embedder())


configure(_runtime_for_this_loop)
preload_pymilvus()  # before any run starts (both runners import this module first)

#: The deployed flow, with its run timeout from the settings (tasks get theirs at run time).
novel_processing = _flow.with_options(timeout_seconds=flow_timeouts(_settings).flow)

__all__ = ["load_embedder", "novel_processing"]
