"""Run cases: for each case FIRST check each checked provider against the float64 reference
(fastgru.testing's contract), then time every provider that may be timed. One row per provider.

Row statuses:
  ok           checked (or a baseline) and timed
  failed       the correctness check failed: not timed, no speedup
  unavailable  the op is not offered by this build (e.g. fastgru.GRUCell not there yet)
  skipped      deliberately not run here (``error`` says why, e.g. compile time)
  oom          out of device memory
  error        the provider raised (``error`` holds the message)
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Iterable

import torch

from .. import testing
from ..ops.guard import tf32_allowed
from . import timing
from .cases import Case
from .gru_providers import gru_setup
from .providers import Unavailable

# suite -> setup(case, device, copies) -> providers.Setup. The repository's bench/ adds its suites.
SETUPS = {"gru": gru_setup}


def tf32(case: Case, device, follows: str) -> bool:
    """Whether fastgru may use TF32 on this case: the library's one rule (ops.guard.tf32_allowed),
    for the torch flag its setup follows ("cudnn" for the GRU layer, "matmul" otherwise)."""
    return tf32_allowed(torch.empty(0, device=device, dtype=case.torch_dtype), follows)


def check(results: dict, ref: dict, dtype, tf32=False, baseline: dict | None = None) -> float:
    """Every named result against the reference (fastgru.testing.check_close); the largest error."""
    missing = set(ref) - set(results)
    if missing:
        raise AssertionError(f"results missing {sorted(missing)}")
    worst = 0.0
    for name, want in ref.items():
        base = baseline.get(name) if baseline else None
        worst = max(worst, testing.check_close(results[name], want, dtype, tf32=tf32, baseline=base, name=name))
    return worst


def max_error(results: dict, ref: dict) -> float:
    return max(testing.rel_error(results[k], v) for k, v in ref.items() if k in results)


def _row(case: Case, provider: str, device: torch.device) -> dict:
    return {
        "suite": case.suite, "op": case.op, "mode": case.mode, "provider": provider, "dtype": case.dtype,
        "device": device.type, "shape": dict(case.shape), "case_id": case.id,
        "median_ms": None, "p20_ms": None, "p80_ms": None, "repeats": None,
        "tokens_per_s": None, "tflops": None, "gbytes_per_s": None, "peak_mem_bytes": None,
        "compile_s": None, "rel_error": None, "tolerance": None, "speedup": {},
        "backend": None, "status": "ok", "error": None,
    }


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _short(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".strip()
    return msg.splitlines()[0][:300] if msg else type(exc).__name__


def run_case(case: Case, device, setup_fn: Callable | None = None, warmup_ms=25.0, rep_ms=100.0) -> list[dict]:
    """All rows of one case. ``setup_fn(case, device, copies)``: the suite's setup (default: SETUPS)."""
    device = torch.device(device)
    if setup_fn is None:
        if case.suite not in SETUPS:
            raise ValueError(f"no setup for suite {case.suite!r} here; pass setup_fn")
        setup_fn = SETUPS[case.suite]
    rows = {p: _row(case, p, device) for p in case.providers}
    probe = setup_fn(case, device, 1)
    copies = timing.copies_needed(probe.input_bytes, device)
    setup = probe if copies == 1 else setup_fn(case, device, copies)
    del probe
    dtype, allow_tf32 = case.torch_dtype, tf32(case, device, setup.tf32_follows)
    limit = testing.tolerance(dtype, allow_tf32)
    ref = setup.reference()
    ref = {k: v.cpu() for k, v in ref.items()}
    baseline = None
    # PyTorch's own result goes first: the contract holds fastgru to 2x its error.
    order = sorted(case.providers, key=lambda p: p != setup.contract_baseline)
    for name in order:
        row = rows[name]
        if name in case.skip:
            row.update(status="skipped", error=case.skip[name])
            continue
        if name not in setup.providers:
            row.update(status="unavailable", error=f"no provider {name!r} for {case.op}")
            continue
        try:
            prep = setup.providers[name]()
            row["backend"], row["compile_s"] = prep.backend, prep.compile_s
            results = prep.result() if prep.result is not None else None
            if name == setup.contract_baseline and results is not None:
                baseline = {k: v for k, v in results.items()}
            if name in setup.checked:
                row["tolerance"] = limit
                if results is None:
                    raise AssertionError("provider gives no results to check")
                try:
                    row["rel_error"] = check(results, ref, dtype, allow_tf32, baseline)
                except AssertionError as exc:
                    row["rel_error"] = max_error(results, ref) if results else None
                    row.update(status="failed", error=f"correctness check: {exc}")
                    continue  # a red check is never timed
            elif results is not None:
                row["rel_error"] = max_error(results, ref)
            del results
            t = timing.time_steps(prep.calls, device, warmup_ms, rep_ms)
            row.update(median_ms=t.median_ms, p20_ms=t.p20_ms, p80_ms=t.p80_ms,
                       repeats=t.repeats if t.repeats >= 0 else None)
            row["peak_mem_bytes"] = timing.peak_memory(prep.calls[0], device)
            sec = t.median_ms / 1e3
            if sec > 0:
                row["tokens_per_s"] = setup.tokens / sec
                row["tflops"] = setup.cost.flops / sec / 1e12
                row["gbytes_per_s"] = setup.cost.bytes / sec / 1e9
        except Unavailable as exc:
            row.update(status="unavailable", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one provider's failure must not stop the sweep
            row.update(status="oom" if _is_oom(exc) else "error", error=_short(exc))
        finally:
            prep = None
            _free(device)
    _speedups(rows.values(), case.baselines)
    return list(rows.values())


def _speedups(rows: Iterable[dict], baselines: tuple) -> None:
    rows = list(rows)
    timed = {r["provider"]: r["median_ms"] for r in rows if r["status"] == "ok" and r["median_ms"]}
    for r in rows:
        if r["status"] != "ok" or not r["median_ms"]:
            continue
        r["speedup"] = {b: timed[b] / r["median_ms"] for b in baselines if b in timed and b != r["provider"]}


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(cases: list[Case], device, budget_s: float | None = None, progress=None,
        warmup_ms=25.0, rep_ms=100.0, setups: dict | None = None) -> tuple[list[dict], dict]:
    """Run cases in order; stop starting new ones once ``budget_s`` seconds have passed.

    ``progress(i, n, case)`` is called before each case; ``setups`` maps each suite to its setup
    (default: SETUPS). Returns (rows, run info).
    """
    setups = SETUPS if setups is None else setups
    start = time.perf_counter()
    rows, not_run = [], []
    for i, case in enumerate(cases):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            not_run = [c.id for c in cases[i:]]
            break
        if progress is not None:
            progress(i, len(cases), case)
        try:
            rows += run_case(case, device, setups.get(case.suite), warmup_ms=warmup_ms, rep_ms=rep_ms)
        except Exception as exc:  # noqa: BLE001 - a broken setup (e.g. OOM on inputs) is recorded
            for p in case.providers:
                row = _row(case, p, torch.device(device))
                row.update(status="oom" if _is_oom(exc) else "error", error=f"setup: {_short(exc)}")
                rows.append(row)
            _free(torch.device(device))
    if progress is not None:
        progress(len(cases) - len(not_run), len(cases), None)
    # A case may run in parts (compile-only parts come last): speedups across all rows of an id.
    baselines = {c.id: c.baselines for c in cases}
    by_id = {}
    for r in rows:
        by_id.setdefault(r["case_id"], []).append(r)
    for case_id, group in by_id.items():
        _speedups(group, baselines[case_id])
    info = {
        "cases": len(cases), "cases_run": len(cases) - len(not_run), "budget_s": budget_s,
        "stopped_by_budget": bool(not_run), "cases_not_run": not_run,
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    return rows, info
