"""``python -m bench [--chapters N] [--repeat N] [--edits] [--only LIST] [--out DIR]``."""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
