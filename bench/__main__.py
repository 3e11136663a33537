"""`python -m bench ...` from the repository root: the benchmark sweep (bench/cli.py)."""

import sys

from bench.cli import main

sys.exit(main())
