"""Run a list of cases and return the result document (not written anywhere):

  {"schema": SCHEMA, "env": {...machine and versions...}, "run": {...options, budget...}, "rows": [...]}

Rows are long-format (one per case and provider); runner.py lists their fields and statuses.
The repository's bench/ folder writes documents to files and validates them against SCHEMA.
Schema 2 added the CUDA-graph form of every row (graphed_* fields, speedup "<baseline> graphed",
headline); schema 1 files (eager times only) are still read.
"""

from __future__ import annotations

import sys

import torch

from . import runner
from .environment import environment
from .progress import Progress

SCHEMA = 2


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def document(env: dict, run: dict, rows: list[dict]) -> dict:
    return {"schema": SCHEMA, "env": env, "run": run, "rows": rows}


def sweep(cases, device=None, budget_s=None, progress=True, warmup_ms=25.0, rep_ms=100.0, setups=None,
          graphs=True, **info) -> dict:
    """Check, then time, every case in order, eager and (``graphs``, CUDA only) captured in a CUDA
    graph (see runner.run); ``info`` goes into the document's ``run`` beside the timing options,
    the budget and the command line."""
    device = torch.device(device or default_device())
    env = environment(device)
    rows, run = runner.run(cases, device, budget_s, Progress() if progress else None, warmup_ms, rep_ms, setups,
                           graphs)
    run.update(info, dtypes=sorted({c.dtype for c in cases}), warmup_ms=warmup_ms, rep_ms=rep_ms,
               command=" ".join(sys.argv))
    return document(env, run, rows)
