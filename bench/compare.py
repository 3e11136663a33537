"""`python bench/compare.py OLD.json NEW.json`: the change between two benchmark runs, row by row."""

import sys

from fastgru.bench.compare import main

if __name__ == "__main__":
    sys.exit(main())
