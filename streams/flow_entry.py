"""Deployment entrypoint of ``novel-processing``: configures the flow runtime on import.

Prefect's process worker starts each run in a fresh interpreter and imports
``streams.flow_entry:novel_processing``; importing this module installs the factory that
builds the runtime (embedder, Kafka publisher) from the ``SCRIBE_`` environment.
"""

from __future__ import annotations

from prefect_bridge.flow import novel_processing as _flow
from prefect_bridge.runtime import configure
from streams.settings import Settings
from streams.wiring import build_flow_runtime, flow_timeouts

_settings = Settings()
configure(lambda: build_flow_runtime(_settings))

#: The deployed flow, with its run timeout from the settings (tasks get theirs at run time).
novel_processing = _flow.with_options(timeout_seconds=flow_timeouts(_settings).flow)

__all__ = ["novel_processing"]
