"""``python -m bench [--chapters N] [--out DIR] [--skip-serve]``."""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
