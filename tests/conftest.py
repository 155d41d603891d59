"""Under pytest-xdist (``-n 3``, the default in ``pyproject.toml``): which worker runs what.

The integration tests share a stack of real services per worker (``tests/integration/
conftest.py``), in the order of its ``ORDER``; each unit test goes wherever a worker is
free. Three groups, each on a worker and its stack, balanced by the CPU seconds and the
waits measured per test (the ``cpu_s`` property of the JUnit report, below): the chaos run
(a cluster of its own) and the tests that kill and restart services; the tests that
mostly wait (a heartbeat window, a try-later, ``scribe dev``'s own stack) beside a few
short ones; everything else. The suite is CPU-bound on 2 cores: a third worker fills the
waits of the other two.

xdist's own ``--dist loadgroup`` marks groups by rewriting ``item._nodeid``, which pytest 9.2
no longer reads (a node id is derived from ``item._id``): its groups were silently spread
over both workers. This scheduler groups by module name instead.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

#: Integration modules (or ``module::test``) by the stack (worker) they run on; the rest
#: run on ``stack-a``. Sized from one measured run (2026-12-07, b98cb86, -n 3, wall seconds
#: under the other workers' load): stack-a ~870 s (its runner warm since b98cb86) + chaos
#: seed 50 ~160 s, stack-b ~1170 s - 160 s, stack-c ~940 s.
STACKS = {
    "test_chaos": "stack-b",
    "test_chaos::test_index_is_the_oracles_after_a_seeded_history_with_faults[50]": "stack-a",
    "test_faults": "stack-b",
    "test_faults::test_a_service_outage_mid_stream_loses_nothing[kafka-15]": "stack-c",
    "test_faults::test_a_service_outage_mid_stream_loses_nothing[milvus-20]": "stack-c",
    "test_dev": "stack-c",
    "test_failures": "stack-c",
    "test_backlog": "stack-c",
    "test_warm_runner": "stack-c",
    "test_crashes": "stack-c",
    "test_status": "stack-c",
    "test_sink_outage": "stack-c",
}


def stack_of(nodeid: str) -> str | None:
    """The stack group of an integration test, ``None`` for a unit test."""
    path, _, test = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if "integration/" not in path and module != "test_chaos":
        return None
    return STACKS.get(f"{module}::{test}", STACKS.get(module, "stack-a"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Scopes: one per stack, one per unit test (``xdist.scheduler.LoadScopeScheduling``)."""
    from xdist.scheduler import LoadScopeScheduling

    class StackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return stack_of(nodeid) or nodeid

    return StackScheduling(config, log)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and every process under it (with the children
    each has already reaped): what one integration test cost its stack."""
    hz = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, stack = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while stack:
        pid = stack.pop()
        total += used.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total / hz


_CPU_AT_START = pytest.StashKey[float]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note the stack's CPU seconds as an integration test starts (see the next hook)."""
    if stack_of(item.nodeid) is not None:
        item.stash[_CPU_AT_START] = tree_cpu_seconds(os.getpid())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record what each integration test cost in CPU seconds, its worker and its stack,
    as the ``cpu_s`` property of its JUnit report: where the suite's time goes."""
    if call.when == "teardown" and _CPU_AT_START in item.stash:
        used = tree_cpu_seconds(os.getpid()) - item.stash[_CPU_AT_START]
        item.user_properties.append(("cpu_s", round(used, 1)))
    return (yield)
