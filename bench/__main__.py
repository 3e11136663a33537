"""`python -m bench ...` from the repository root: the benchmark sweep (fastgru.bench.cli)."""

import sys

from fastgru.bench.cli import main

sys.exit(main())
