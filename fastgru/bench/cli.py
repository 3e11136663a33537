"""Command line of the benchmark sweep: ``python -m bench`` (repo) or ``python -m fastgru.bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import cases as C
from . import render, results, runner
from .progress import Progress


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="fastgru benchmark sweep: correctness check first, then timing; writes "
                    "<out>/<device>/<date>-<commit>.json with a Markdown table and plots.",
    )
    p.add_argument("--suite", choices=C.SUITES + ("all",), default="all")
    p.add_argument("--quick", action="store_true", help="a small subset (a minute on a GPU, seconds on CPU)")
    p.add_argument("--dtype", default=None,
                   help="comma-separated from fp32,bf16, or 'all' (default: both on CUDA, fp32 on CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    p.add_argument("--out", default="bench/results", help="results folder (default bench/results)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new cases after this many seconds (recorded in the file)")
    p.add_argument("--warmup-ms", type=float, default=25.0)
    p.add_argument("--rep-ms", type=float, default=100.0)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--list", action="store_true", help="print the case ids and exit")
    p.add_argument("--index-only", action="store_true", help="only regenerate <out>/README.md")
    return p.parse_args(argv)


def _dtypes(arg):
    if arg is None:
        return None
    if arg == "all":
        return tuple(C.DTYPES)
    return tuple(d.strip() for d in arg.split(",") if d.strip())


def sweep(suite="all", quick=False, dtypes=None, device=None, budget_s=None, progress=True,
          warmup_ms=25.0, rep_ms=100.0):
    """Run a sweep and return the result document (not written)."""
    device = torch.device(device or default_device())
    selected = C.select(suite, quick, dtypes, device)
    env = results.environment(device)
    bar = Progress() if progress else None
    rows, info = runner.run(selected, device, budget_s, bar, warmup_ms, rep_ms)
    info.update(suite=suite, quick=quick, dtypes=sorted({c.dtype for c in selected}),
                warmup_ms=warmup_ms, rep_ms=rep_ms, command=" ".join(sys.argv))
    return results.document(env, info, rows)


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    if a.index_only:
        print(render.write_index(out))
        return 0
    device = default_device() if a.device == "auto" else a.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if a.list:
        for c in C.select(a.suite, a.quick, _dtypes(a.dtype), device):
            print(c.id, "" if not c.skip else f"(skip: {', '.join(c.skip)})")
        return 0
    doc = sweep(a.suite, a.quick, _dtypes(a.dtype), device, a.budget_s, not a.no_progress, a.warmup_ms, a.rep_ms)
    path = results.write(doc, out)
    md = render.markdown(doc)
    path.with_suffix(".md").write_text(md)
    made = [] if a.no_plots else render.plots(doc, path.with_suffix(""))
    index = render.write_index(out)
    statuses = {}
    for r in doc["rows"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    if a.quick:
        print(md)
    print(f"rows: {statuses}")
    if doc["run"]["stopped_by_budget"]:
        print(f"stopped by the time budget: {len(doc['run']['cases_not_run'])} cases not started")
    if doc["env"]["device_type"] != "cuda":
        print(f"note: {results.CPU_NOTE}")
    if not a.no_plots and not render.have_matplotlib():
        print("plots skipped: matplotlib is not installed (pip install 'fastgru[plot]')")
    for f in [path, path.with_suffix(".md"), *made, index]:
        print(f"wrote {f}")
    bad = [r for r in doc["rows"] if r["status"] in ("failed", "error") and r["provider"] == "fastgru"]
    return 1 if bad else 0
