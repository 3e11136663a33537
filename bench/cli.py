"""Command line of the benchmark sweep, ``python -m bench`` from the repository root: select the
cases, run them (fastgru.bench: correctness check first, then timing, eager and captured in a CUDA
graph), write the result file, its Markdown table and plots, and regenerate the index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fastgru.bench.environment import CPU_NOTE
from fastgru.bench.sweep import default_device, sweep
from fastgru.bench.table import markdown

from bench import plots, result_files, results_index, suites

OTHER_COMMANDS = """\
other commands (from the repository root; see bench/README.md):
  python -m bench.compare OLD.json NEW.json    the change between two runs, row by row
  python -m bench.compile --quick --out DIR    every kernel compiled for sm_90 without a GPU
  python bench/strategy_table.py --out DIR     every GRU strategy beside nn.GRU (CUDA)
  python -m bench.barrier_floor --out DIR      the grid barrier's latency (CUDA)
  pytest bench --benchmark-only                pytest-benchmark cases
  bash bench/gpu_check.sh                      the one command for a lent GPU
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="fastgru benchmark sweep: correctness check first, then timing (eager, and captured in\n"
                    "a CUDA graph on CUDA); writes <out>/<device>/<date>-<commit>.json with a Markdown\n"
                    "table and plots.",
        epilog=OTHER_COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", choices=suites.SUITES + ("all",), default="all")
    p.add_argument("--quick", action="store_true", help="a small subset (a minute on a GPU, seconds on CPU)")
    p.add_argument("--dtype", default=None,
                   help="comma-separated from fp32,bf16, or 'all' (default: both on CUDA, fp32 on CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    p.add_argument("--out", default="bench/results", help="results folder (default bench/results)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new cases after this many seconds (recorded in the file)")
    p.add_argument("--warmup-ms", type=float, default=25.0)
    p.add_argument("--rep-ms", type=float, default=100.0)
    p.add_argument("--no-graphs", action="store_true",
                   help="time the eager form only (rows say graphed_status 'skipped'); halves the timing")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--list", action="store_true", help="print the case ids and exit")
    p.add_argument("--index-only", action="store_true", help="only regenerate <out>/README.md")
    return p.parse_args(argv)


def _dtypes(arg):
    if arg is None:
        return None
    if arg == "all":
        return tuple(suites.DTYPES)
    return tuple(d.strip() for d in arg.split(",") if d.strip())


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    if a.index_only:
        print(results_index.write_index(out))
        return 0
    device = default_device() if a.device == "auto" else a.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    cases = suites.select(a.suite, a.quick, _dtypes(a.dtype), device)
    if a.list:
        for c in cases:
            print(c.id, "" if not c.skip else f"(skip: {', '.join(c.skip)})")
        return 0
    doc = sweep(cases, device, a.budget_s, not a.no_progress, a.warmup_ms, a.rep_ms, suites.SETUPS,
                graphs=not a.no_graphs, suite=a.suite, quick=a.quick)
    path = result_files.write(doc, out)
    md = markdown(doc)
    path.with_suffix(".md").write_text(md)
    made = [] if a.no_plots else plots.plots(doc, path.with_suffix(""))
    index = results_index.write_index(out)
    statuses = {}
    for r in doc["rows"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    if a.quick:
        print(md)
    print(f"rows: {statuses}")
    if doc["run"]["stopped_by_budget"]:
        print(f"stopped by the time budget: {len(doc['run']['cases_not_run'])} cases not started")
    if doc["env"]["device_type"] != "cuda":
        print(f"note: {CPU_NOTE}")
    if not a.no_plots and not plots.have_matplotlib():
        print("plots skipped: matplotlib is not installed (pip install 'fastgru[plot]')")
    for f in [path, path.with_suffix(".md"), *made, index]:
        print(f"wrote {f}")
    bad = [r for r in doc["rows"] if r["status"] in ("failed", "error") and r["provider"] == "fastgru"]
    return 1 if bad else 0
