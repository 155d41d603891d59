"""Unit tests see no ``SCRIBE_*`` environment: the defaults, and what each test sets.

Under pytest-xdist a worker may run unit tests after its integration stack exported its
settings (ports, topics) into the process's environment for its children; without this
a unit test of the defaults would read that stack's instead.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_scribe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("SCRIBE_")]:
        monkeypatch.delenv(name)
