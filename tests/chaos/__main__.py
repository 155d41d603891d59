"""``python -m tests.chaos --seed S --ops N --faults F --dry-run``.

Prints the seeded history, its fault schedule and the index the oracle expects of it
(rows per novel and chapter, dead letters), chunked as the runner would with the
``SCRIBE_*`` settings of this environment (chunk budget, embedder's tokenizer, partitions
of the topics). Driving a real stack is :func:`tests.chaos.run.run` with a
:class:`tests.chaos.run.Driver`.
"""

from __future__ import annotations

import argparse
import sys

from prefect_bridge.chunking import TokenCounter, estimate_tokens
from tests.chaos.history import generate_faults, generate_history
from tests.chaos.oracle import expected_index
from tests.chaos.run import simulate_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ops", type=int, default=60, help="operations in the history")
    parser.add_argument("--faults", type=int, default=4, help="faults in the schedule")
    parser.add_argument(
        "--dry-run", action="store_true", help="print, drive nothing (the only mode here)"
    )
    parser.add_argument(
        "--estimate-tokens",
        action="store_true",
        help="count tokens with the model-free estimate, not the embedder's tokenizer "
        "(faster; the chunks differ from the runner's)",
    )
    args = parser.parse_args(argv)
    if not args.dry_run:
        parser.error(
            "only --dry-run is available from the command line; a run against a stack is "
            "tests.chaos.run.run(seed, ops, faults, driver, policy, count_tokens)"
        )
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


if __name__ == "__main__":
    sys.exit(main())
