"""Under pytest-xdist (``-n 2``, the default in ``pyproject.toml``): which worker runs what.

The integration tests share a stack of real services per worker (``tests/integration/
conftest.py``), in the order of its ``ORDER``. The modules of ``SECOND_STACK`` (the chaos
run, with a cluster of its own, then the tests that kill and restart services) go to one
worker and its stack, every other integration module to the other worker's; each unit
test goes wherever a worker is free. One run so measured took 29.5 min instead of 40.

xdist's own ``--dist loadgroup`` marks groups by rewriting ``item._nodeid``, which pytest 9.2
no longer reads (a node id is derived from ``item._id``): its groups were silently spread
over both workers. This scheduler groups by module name instead.
"""

from __future__ import annotations

from typing import Any

import pytest

#: Integration modules run on the second worker's stack (~1140 s of ~2400 s measured).
SECOND_STACK = {"test_chaos", "test_crashes", "test_warm_runner", "test_faults"}


def stack_of(nodeid: str) -> str | None:
    """``stack-a`` or ``stack-b`` for an integration test, ``None`` for a unit test."""
    path = nodeid.split("::", 1)[0]
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if "integration/" not in path and module != "test_chaos":
        return None
    return "stack-b" if module in SECOND_STACK else "stack-a"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Scopes: one per stack, one per unit test (``xdist.scheduler.LoadScopeScheduling``)."""
    from xdist.scheduler import LoadScopeScheduling

    class StackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return stack_of(nodeid) or nodeid

    return StackScheduling(config, log)
