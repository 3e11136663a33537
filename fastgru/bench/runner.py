"""Run cases: for each case FIRST check each checked provider against the float64 reference
(fastgru.testing's contract), then time every provider that may be timed, two ways: eager, and
each step captured in a CUDA graph and replayed (timing.capture). One row per provider.

Row statuses (of the provider and its eager time):
  ok           checked (or a baseline) and timed
  failed       the correctness check failed: not timed, no speedup
  unavailable  the op is not offered by this build (e.g. fastgru.GRUCell not there yet)
  skipped      deliberately not run here (``error`` says why, e.g. compile time)
  oom          out of device memory
  error        the provider raised (``error`` holds the message)

Graphed statuses (``graphed_status``, on ok rows; None on the others, which have no time at all):
  ok           captured, its replay matches the eager result within the row's limit, timed
               (graphed_ms, graphed_p20_ms, graphed_p80_ms; graphed_rel_error: replay vs eager)
  unavailable  cannot be captured here (``graphed_error``: "CUDA graphs need a CUDA device")
  skipped      not captured by design (a torch.compile'd provider; --no-graphs)
  failed       captured, but the replay differs from the eager result: not timed
  error        the capture raised (``graphed_error``: the cause's first line)
  oom          out of device memory while capturing or replaying

Speedups (``speedup`` and ``headline``, on ok rows) come from ``speedups``; see its docstring.
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Iterable

import torch

from .. import testing
from ..launchers.tf32 import tf32_allowed
from . import timing
from .cases import Case
from .gru_providers import gru_setup
from .lstm_providers import lstm_setup
from .providers import Unavailable
from .timing import GRAPHED

# suite -> setup(case, device, copies) -> providers.Setup. The repository's bench/ adds its suites.
SETUPS = {"gru": gru_setup, "lstm": lstm_setup}


def tf32(case: Case, device, follows: str) -> bool:
    """Whether fastgru may use TF32 on this case: the library's one rule (launchers/tf32.py),
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
        "graphed_ms": None, "graphed_p20_ms": None, "graphed_p80_ms": None, "graphed_rel_error": None,
        "graphed_status": None, "graphed_error": None, "headline": {},
    }


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


_short = timing.first_line


def run_case(case: Case, device, setup_fn: Callable | None = None, warmup_ms=25.0, rep_ms=100.0,
             graphs: bool = True) -> list[dict]:
    """All rows of one case. ``setup_fn(case, device, copies)``: the suite's setup (default: SETUPS);
    ``graphs=False`` leaves out the CUDA-graph timing (graphed_status "skipped")."""
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
            row.update(graphed(prep, device, limit, warmup_ms, rep_ms, graphs))
        except Unavailable as exc:
            row.update(status="unavailable", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one provider's failure must not stop the sweep
            row.update(status="oom" if _is_oom(exc) else "error", error=_short(exc))
        finally:
            prep = None
            _free(device)
    speedups(rows.values(), case.baselines)
    return list(rows.values())


def graphed(prep, device: torch.device, limit: float, warmup_ms=25.0, rep_ms=100.0, enabled=True) -> dict:
    """The graphed fields of an ok row: capture every step of ``prep`` (timing.capture), check the
    first replay against an eager call of the same step (relative error within ``limit``, the
    row's contract limit: a replay of stale or wrong memory is never timed), then time the replays."""
    out = {"graphed_ms": None, "graphed_p20_ms": None, "graphed_p80_ms": None, "graphed_rel_error": None,
           "graphed_status": "ok", "graphed_error": None}
    if not enabled:
        return dict(out, graphed_status="skipped", graphed_error="graphed timing turned off (--no-graphs)")
    blocker = timing.graph_blocker(device, prep.no_graph)
    if blocker is not None:
        return dict(out, graphed_status="skipped" if prep.no_graph else "unavailable", graphed_error=blocker)
    replays = None
    try:
        want = timing.tensors(prep.calls[0]())
        replays = timing.capture(prep.calls, device)
        got = timing.tensors(replays[0]())
        if len(got) != len(want):
            raise AssertionError(f"the replay gives {len(got)} tensors, the eager call {len(want)}")
        err = max((replay_error(g, w) for g, w in zip(got, want)), default=0.0)
        out["graphed_rel_error"] = err
        if not err <= limit:  # NaN fails too
            return dict(out, graphed_status="failed",
                        graphed_error=f"replay differs from eager: relative error {err:.3g} > {limit:.3g}")
        del want, got
        t = timing.time_steps(replays, device, warmup_ms, rep_ms)
        return dict(out, graphed_ms=t.median_ms, graphed_p20_ms=t.p20_ms, graphed_p80_ms=t.p80_ms)
    except timing.CaptureError as exc:  # its message is already the cause's first line
        return dict(out, graphed_status="oom" if _is_oom(exc) else "error", graphed_error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the eager time stands; the graphed form says why it has none
        return dict(out, graphed_status="oom" if _is_oom(exc) else "error", graphed_error=_short(exc))
    finally:
        replays = None
        _free(device)


def replay_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """testing.rel_error of a replay's tensor against the eager one, computed where they live (a
    large training step's gradients are not copied to the host for this)."""
    if got.shape != want.shape:
        raise AssertionError(f"replay shape {tuple(got.shape)} differs from eager {tuple(want.shape)}")
    if not got.is_floating_point():
        return 0.0 if torch.equal(got, want) else float("inf")
    got, want = got.detach().double(), want.detach().double()
    diff = float(torch.linalg.vector_norm(got - want))
    scale = float(torch.linalg.vector_norm(want))
    return diff / scale if scale > 0 else diff


def headline(base_eager: float, base_graphed: float | None, eager: float, graphed_ms: float | None,
             base_graphed_status: str | None = None) -> dict:
    """The headline ratio against one baseline: the baseline's faster form (eager or graphed)
    over this row's faster form, with the form each side used and the baseline's graphed status
    (so a row whose baseline could not be captured says it was held to the eager form only)."""
    base_form, base = ("graphed", base_graphed) if base_graphed and base_graphed < base_eager else ("eager", base_eager)
    form, mine = ("graphed", graphed_ms) if graphed_ms and graphed_ms < eager else ("eager", eager)
    return {"ratio": base / mine, "form": form, "baseline_form": base_form, "baseline_graphed": base_graphed_status}


def speedups(rows: Iterable[dict], baselines: tuple) -> None:
    """Fill ``speedup`` and ``headline`` of every ok row, against each baseline that has a time:

      speedup[b]             b's eager time / this row's eager time (the only ratio before graphs)
      speedup[b + " graphed"] b's graphed time / this row's graphed time (when both were captured)
      headline[b]            ``headline``: b's faster form / this row's faster form

    A row is never its own baseline. Rows that are not ok get neither.
    """
    rows = list(rows)
    ok = [r for r in rows if r["status"] == "ok" and r["median_ms"]]
    eager = {r["provider"]: r["median_ms"] for r in ok}
    graphs = {r["provider"]: r.get("graphed_ms") for r in ok if r.get("graphed_status") == "ok" and r.get("graphed_ms")}
    status = {r["provider"]: r.get("graphed_status") for r in ok}
    for r in ok:
        mine = graphs.get(r["provider"])
        sp, hl = {}, {}
        for b in baselines:
            if b == r["provider"] or b not in eager:
                continue
            sp[b] = eager[b] / r["median_ms"]
            if b in graphs and mine:
                sp[b + GRAPHED] = graphs[b] / mine
            hl[b] = headline(eager[b], graphs.get(b), r["median_ms"], mine, status[b])
        r["speedup"], r["headline"] = sp, hl


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(cases: list[Case], device, budget_s: float | None = None, progress=None,
        warmup_ms=25.0, rep_ms=100.0, setups: dict | None = None, graphs: bool = True) -> tuple[list[dict], dict]:
    """Run cases in order; stop starting new ones once ``budget_s`` seconds have passed.

    ``progress(i, n, case)`` is called before each case; ``setups`` maps each suite to its setup
    (default: SETUPS); ``graphs=False`` leaves out the CUDA-graph timing. Returns (rows, run info).
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
            rows += run_case(case, device, setups.get(case.suite), warmup_ms=warmup_ms, rep_ms=rep_ms, graphs=graphs)
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
        speedups(group, baselines[case_id])
    info = {
        "cases": len(cases), "cases_run": len(cases) - len(not_run), "budget_s": budget_s,
        "stopped_by_budget": bool(not_run), "cases_not_run": not_run,
        "elapsed_s": round(time.perf_counter() - start, 3), "graphs": graphs,
    }
    return rows, info
