"""fastgru's benchmarks, run from the repository root and never installed (see bench/README.md).

The shipped core they build on is fastgru.bench."""
