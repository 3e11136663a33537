"""The persistent kernel's variant matrix for ``python bench/strategy_table.py --variants SET``,
and what running it costs on an H100 (the ``--dry-run`` estimate and the run's own budget).

One item is one row of the result file: nn.GRU (timed eager and CUDA-graphed, the baseline) or
the persistent strategy forced under ``persistent_choice(variant, block_h, num_warps)`` (timed
graphed only: the variants differ in per-step latency, which the CUDA graph shows without the
host's launch overhead; the eager first call is still made, and checked, because it is the call
that compiles). Items sharing (dtype, mode, reset_after, H, B) form a cell: one nn.GRU, one float64
reference, every variant beside them.

The whole question is every variant at B 1 / 8 / 64, H 256 / 512 / 1024, bf16 and fp32,
inference and training, T = 512. Each distinct kernel is a Triton compile of 1-6 s, and that
whole matrix is some 500 of them: far past the 4 minutes one GPU call gives this step even with
the compiles run in parallel first (bench/precompile.py: 8 worker processes on the H100
machine's 16 cores fill Triton's on-disk cache, and the timing process loads each kernel from
it). The ``goal`` set keeps T = 512 and cuts the matrix instead, most important first (a run
stopped by its budget loses the tail; the warm-up pool takes its jobs in the same order):

  1. bf16 inference, B = 1, H 256 / 512 / 1024 (the goal row): the five variants of
     VARIANTS at the dispatcher's block, then today's kernel (base) at every hidden block x warp
     count of SWEEP_BLOCKS x SWEEP_WARPS whose weight tiles fit one block's shared memory. The
     sweep takes base, not the combined variant: it continues the 2026-11-23 measurements (where
     the smallest block was fastest, not the dispatcher's 64) with the kernel they measured, and
     a variant kernel that fails or spills on its first GPU run cannot take the sweep with it.
  2. bf16 training, B = 1, H 256 / 512 / 1024: the five variants (split moves the saved-for-
     backward stores off the critical path, so training is where it should show).
  3. bf16 inference, B = 8 and 64: the five variants (B 1, 8 and 64 are three compiles even at
     one block, Triton specializing an int argument equal to 1 or divisible by 16), and at B = 8
     the base sweep of 1. (these rows sit in the same cells, so they run here, not at the end);
     H 1024 at B = 64 left out everywhere: no hidden block held it on 2026-11-23 (skipped rows,
     every candidate compiled for nothing).
  4. fp32 inference, B = 1 and 8, H 256 / 512 (TF32 as torch.backends.cudnn.allow_tf32 says):
     plain TF32 and 3xTF32 at hidden blocks 16 and 32 (4 warps), and base at the dispatcher's
     block; H 1024 left out: no fp32 block held it on 2026-11-23.
  5. reset_after = False (no nn.GRU: cuDNN has no such GRU; the reference is
     fastgru.reference.gru_layer in float64): base against recompute, bf16 inference and
     training, B = 1, H 256 / 512 / 1024.
  6. bf16 training, B = 8 and 64: the five variants (the backward takes only ``flags``, so two
     backward compiles per shape).

Not in ``goal`` (they do not fit the step's 200 s with the estimate below; each adds 10-40 s):
fp32 training; fp32 at B = 64; reset_after = False at B = 8 / 64; the sweep of the combined
variant, and the sweep at B = 64 or in training. ``smoke`` is three cells for a first look
(about half a minute).

The estimate (``estimate``) is the sum of stated per-item costs, calibrated on the H100 files of
2026-11-23 (bench/results/nvidia-h100-80gb-hbm3/strategies/2026-11-23-run2/), plus the warm-up
pool's wall time (pool_seconds: the workers' start-up, then the jobs in order on whichever
worker is free, each compile slowed by PARALLEL_SLOWDOWN) and a cache load per kernel in the
timing process; see the constants (the pool's are guesses: no pool has run on a GPU yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastgru.gpu import HOPPER_LIMITS
from fastgru.launchers.plan import persistent_candidates

VARIANTS = ("base", "prefetch", "split", "flags", "prefetch+split+flags")
COMBINED = "prefetch+split+flags"
SWEEP_BLOCKS = (16, 32, 64)
SWEEP_WARPS = (4, 8)
PRECISIONS = ("tf32", "tf32x3")
T_DEFAULT = 512
BASELINE = "nn.GRU"
PERSISTENT = "persistent"

# --- the H100's shared memory per block, by which the dispatcher passes over a candidate
SMEM_PER_BLOCK = HOPPER_LIMITS[2]
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# --- costs, seconds, on an H100 (calibration: the 2026-11-23 run2 files' first_call_s)
# The process: interpreter, torch and triton imports, the CUDA context, cuBLAS/cuDNN handles, and
# the first Triton kernel of the process (run2's first persistent row took 6.1 s, the next shape's
# 1.3 s: about 5 s of one-time setup).
STARTUP_S = 10.0
# One persistent forward kernel compiled, by H (the K side, BLOCK_HP): run2's inference rows'
# first_call_s at a shape whose kernel was new: H 256 0.73-1.10 (bf16), 0.97-1.04 (fp32); H 512
# 1.30-1.45; H 1024 2.32-2.85. Rounded up.
COMPILE_FWD_S = {256: 1.2, 512: 1.5, 1024: 2.6}
# The backward kernel: run2's training first calls (forward with SAVE plus backward) less the
# forward: H 256 2.5-3.4, H 512 3.9-5.6, H 1024 7.3-9.2 in all.
COMPILE_BWD_S = {256: 2.0, 512: 3.5, 1024: 6.5}
# A variant other than base has more code on the step's path; its compile time was never measured
# (no variant kernel had run on a GPU when this was written): a guess.
VARIANT_COMPILE_FACTOR = 1.25
# A cell: the modules, the inputs and the float64 reference (cuDNN in fp64; the Python loop of
# fastgru.reference for reset_after=False, about 8k small launches at T = 512).
CELL_SETUP_S = 0.3
CELL_SETUP_RESET_BEFORE_S = 1.0
# One call at T = 512, upper bounds from the committed rows (nn.GRU eager 5-15 ms inference,
# 14-42 ms training; persistent 2-17 ms).
CALL_S = {"inference": 0.015, "training": 0.045}
# A do_bench timing: its warm-up and repetitions, plus its five-call estimate, the L2 flush and
# the synchronizations (one call); a graphed one also captures (three warm-up calls on a side
# stream, the capture, one replay checked): five calls and 0.05 s to instantiate the graph.
TIMING_OVERHEAD_S = 0.05
GRAPH_OVERHEAD_S = 0.05

# --- the warm-up pool (bench/precompile.py): the compiles run in parallel before the timing
# The GPU machine's 16 CPU cores: 8 workers (the run's default there, min(8, cores - 2)), the
# count the dry run assumes.
WORKERS_H100 = 8
# One worker's start-up, in parallel with the others': interpreter and imports, the CUDA context,
# the first Triton kernel's one-time setup. STARTUP_S less the cuBLAS/cuDNN handles: a guess (not
# measured in a worker).
WORKER_STARTUP_S = 8.0
# Concurrent compiles share the machine (memory bandwidth, clocks, ptxas processes): each compile
# counted this much longer than alone. A guess (not measured).
PARALLEL_SLOWDOWN = 1.3
# A job beyond its compiles: the module, the inputs and the call at T = 32, the report back.
JOB_OVERHEAD_S = 0.3
# A kernel another process compiled, taken from Triton's on-disk cache by the timing process: the
# cache key, reading the binary and its metadata, loading the module on the device. A guess (not
# measured; assumed 20-100 ms, counted at 0.15 s).
CACHE_LOAD_S = 0.15


@dataclass(frozen=True)
class Item:
    """One row to time. block_h / num_warps None: the dispatcher's candidates decide."""

    dtype: str
    mode: str
    H: int
    B: int
    reset_after: bool
    provider: str
    variant: str | None = None
    block_h: int | None = None
    num_warps: int | None = None

    @property
    def cell(self) -> tuple:
        return (self.dtype, self.mode, self.reset_after, self.H, self.B)

    @property
    def forms(self) -> tuple[str, ...]:
        return ("eager", "graphed") if self.provider == BASELINE else ("graphed",)

    @property
    def formulation(self) -> str:
        return "reset_after" if self.reset_after else "reset_before"

    def describe(self) -> str:
        block = "-" if self.block_h is None else str(self.block_h)
        warps = "-" if self.num_warps is None else str(self.num_warps)
        return (f"{self.provider:10} {self.variant or '-':21} block {block:>2} warps {warps:>1}  {self.dtype:4} "
                f"{self.mode:9} H{self.H:<5} B{self.B:<3} {self.formulation:12} {'+'.join(self.forms)}")


def _p(dtype, mode, H, B, variant, block_h=None, num_warps=None, reset_after=True):
    return Item(dtype, mode, H, B, reset_after, PERSISTENT, variant, block_h, num_warps)


def _candidate_blocks(B: int, H: int) -> tuple[list[int], int, int]:
    """(hidden blocks in the dispatcher's order, BLOCK_B, BLOCK_HP) of its persistent candidates
    for a shape (fastgru.launchers.plan.persistent_candidates)."""
    plans = persistent_candidates(B, H, 1)
    return list(dict.fromkeys(p.block_h for p in plans)), plans[0].block_b, plans[0].block_k


def fits_smem(dtype: str, H: int, block_h: int) -> bool:
    """The dispatcher's pre-check: the three weight tiles of a hidden block in one block's shared
    memory (fastgru.launchers.plan._persistent_plan)."""
    return 3 * block_h * _candidate_blocks(1, H)[2] * DTYPE_BYTES[dtype] <= SMEM_PER_BLOCK


def sweep(dtype, mode, H, B, variant="base"):
    """``variant`` at every block x warps of the sweep whose weight tiles fit shared memory."""
    blocks = _candidate_blocks(B, H)[0]
    return [_p(dtype, mode, H, B, variant, bh, w) for bh in SWEEP_BLOCKS if bh in blocks
            and fits_smem(dtype, H, bh) for w in SWEEP_WARPS]


def _hiddens(B: int) -> list[int]:
    """H 256 / 512 / 1024, less H 1024 at B = 64 (no hidden block held it on 2026-11-23)."""
    return [H for H in (256, 512, 1024) if (H, B) != (1024, 64)]


def _goal() -> list[Item]:
    items: list[Item] = []
    for H in (256, 512, 1024):  # 1. the goal row: every variant, then the block x warps sweep
        items += [_p("bf16", "inference", H, 1, v) for v in VARIANTS] + sweep("bf16", "inference", H, 1)
    items += [_p("bf16", "training", H, 1, v) for H in _hiddens(1) for v in VARIANTS]  # 2. training
    for B in (8, 64):  # 3. larger batches
        items += [_p("bf16", "inference", H, B, v) for H in _hiddens(B) for v in VARIANTS]
    for B in (1, 8):  # 4. fp32
        for H in (256, 512):
            items.append(_p("fp32", "inference", H, B, "base"))
            items += [_p("fp32", "inference", H, B, p, bh, 4) for bh in (16, 32) for p in PRECISIONS]
    for mode in ("inference", "training"):  # 5. reset_after=False
        items += [_p("bf16", mode, H, 1, v, reset_after=False) for H in _hiddens(1) for v in ("base", "recompute")]
    for B in (8, 64):  # 6. training, larger batches
        items += [_p("bf16", "training", H, B, v) for H in _hiddens(B) for v in VARIANTS]
    for H in _hiddens(8):  # 7. the sweep at B = 8
        items += sweep("bf16", "inference", H, 8)
    return items


def _smoke() -> list[Item]:
    return ([_p("bf16", "inference", 256, 1, v) for v in ("base", COMBINED)]
            + [_p("bf16", "training", 256, 1, "flags")]
            + [_p("bf16", "inference", 256, 1, v, reset_after=False) for v in ("base", "recompute")])


SETS = {"goal": _goal, "smoke": _smoke}


def matrix(name: str = "goal") -> list[Item]:
    """The rows of set ``name``, cell by cell (each reset_after=True cell opens with nn.GRU), in
    the order they run: cells in the order they first appear in the set."""
    if name not in SETS:
        raise ValueError(f"variants: expected one of {sorted(SETS)}, got {name!r}")
    cells: dict = {}
    for item in SETS[name]():
        cells.setdefault(item.cell, [])
        if item not in cells[item.cell]:
            cells[item.cell].append(item)
    out = []
    for (dtype, mode, reset_after, H, B), items in cells.items():
        if reset_after:
            out.append(Item(dtype, mode, H, B, True, BASELINE))
        out += items
    return out


def cells(items) -> list[list[Item]]:
    """The items grouped by cell, in order."""
    grouped: dict = {}
    for item in items:
        grouped.setdefault(item.cell, []).append(item)
    return list(grouped.values())


# ------------------------------------------------------------------------------------ compiles
def planned_block(item: Item) -> tuple[int, int]:
    """(block_h, forward warps) a persistent item runs, as far as the CPU can tell: forced ones as
    given; otherwise the dispatcher's first candidate (its blocks in order, 4 warps) whose weight
    tiles fit shared memory. On the GPU a candidate that spills or is not co-resident is passed over,
    one compile more than estimated."""
    if item.block_h is not None:
        block_h = item.block_h
    else:
        blocks = _candidate_blocks(item.B, item.H)[0]
        block_h = next((bh for bh in blocks if fits_smem(item.dtype, item.H, bh)), blocks[-1])
    return block_h, item.num_warps or 4


def _b_spec(B: int) -> str:
    """How Triton specializes an int argument: equal to 1, divisible by 16, or neither."""
    return "1" if B == 1 else "d16" if B % 16 == 0 else "-"


def _parts(variant: str) -> set[str]:
    return set() if variant == "base" else set(variant.split("+"))


def kernel_keys(item: Item, tf32: bool = True) -> list[tuple]:
    """The distinct compiled kernels an item needs: its forward (with or without the saved stores),
    and in training the backward, which takes only ``flags`` of the variant. fp32 precision: None
    compiles as 3xTF32 where TF32 is allowed (the launcher's default), and precision means nothing
    where it is not."""
    if item.provider != PERSISTENT:
        return []
    parts = _parts(item.variant)
    precision = next((p for p in PRECISIONS if p in parts), None)
    if item.dtype == "fp32":
        precision = (precision or "tf32x3") if tf32 else "ieee"
    switches = tuple(sorted(parts - set(PRECISIONS)))
    block_h, warps = planned_block(item)
    block_b = _candidate_blocks(item.B, item.H)[1]
    shape = (item.dtype, item.reset_after, item.H, block_b, _b_spec(item.B), block_h)
    keys = [("fwd", *shape, warps, item.mode == "training", switches, precision)]
    if item.mode == "training":
        keys.append(("bwd", *shape, 8, "flags" in parts, precision))
    return keys


def _by_h(table: dict, H: int) -> float:
    return table[min((h for h in table if h >= H), default=max(table))]


def compile_cost(key: tuple) -> float:
    kind, H, switches = key[0], key[3], key[8] if key[0] == "fwd" else ()
    base = _by_h(COMPILE_FWD_S if kind == "fwd" else COMPILE_BWD_S, H)
    changed = bool(switches) if kind == "fwd" else key[8]  # the backward's one switch: flags
    return base * (VARIANT_COMPILE_FACTOR if changed else 1.0)


def item_cost(item: Item, warmup_ms: float, rep_ms: float, nn_warmup_ms: float, nn_rep_ms: float,
              new_keys=()) -> float:
    """Seconds one row takes beyond its compiles' (compile_cost of ``new_keys`` is added)."""
    call = CALL_S[item.mode]
    if item.provider == BASELINE:
        eager = (nn_warmup_ms + nn_rep_ms) / 1e3 + 6 * call + TIMING_OVERHEAD_S
        graphed = (nn_warmup_ms + nn_rep_ms) / 1e3 + 11 * call + TIMING_OVERHEAD_S + GRAPH_OVERHEAD_S
        return call + eager + graphed
    graphed = (warmup_ms + rep_ms) / 1e3 + 11 * call + TIMING_OVERHEAD_S + GRAPH_OVERHEAD_S
    return call + TIMING_OVERHEAD_S + graphed + sum(compile_cost(k) for k in new_keys)


def cell_cost(first: Item) -> float:
    return CELL_SETUP_S if first.reset_after else CELL_SETUP_RESET_BEFORE_S


# ------------------------------------------------------------------------------------ the warm-up pool
@dataclass(frozen=True)
class Job:
    """One warm-up job: the first call of ``items[index]`` at a short T in a worker process, which
    compiles ``keys`` (the kernels no earlier job compiles) into Triton's on-disk cache."""

    index: int
    item: Item
    keys: tuple


def warm_jobs(items, tf32: bool = True) -> list[Job]:
    """One job per item that needs a kernel no earlier item needs, in the items' order (the most
    important first, so a pool stopped by its deadline loses the tail): every distinct compile key
    of ``items`` is in exactly one job."""
    seen: set = set()
    jobs = []
    for index, item in enumerate(items):
        new = tuple(k for k in kernel_keys(item, tf32) if k not in seen)
        if new:
            seen.update(new)
            jobs.append(Job(index, item, new))
    return jobs


def job_cost(job: Job) -> float:
    """Seconds a worker spends on ``job``: its compiles, slowed by the others running beside it."""
    return JOB_OVERHEAD_S + PARALLEL_SLOWDOWN * sum(compile_cost(k) for k in job.keys)


def pool_seconds(costs, workers: int) -> float:
    """The pool's wall time: every worker starts (in parallel), then takes the next job in order
    as soon as it is free (what a shared task queue does); the last job's end."""
    if not costs:
        return 0.0
    free = [WORKER_STARTUP_S] * max(1, workers)
    for c in costs:
        i = free.index(min(free))
        free[i] += c
    return max(free)


def estimate(items, warmup_ms: float, rep_ms: float, nn_warmup_ms: float, nn_rep_ms: float,
             tf32: bool = True, workers: int = 0, warm=None) -> dict:
    """{"rows", "cells", "compiles", "jobs", "seconds", "per_row": [seconds], "breakdown": {...}}:
    the expected duration of timing ``items`` in order in one fresh process. ``workers`` > 0: a
    warm-up pool of that many workers first compiles every kernel (pool_seconds over warm_jobs),
    and the timing process loads each from the cache (CACHE_LOAD_S) instead of compiling it.
    ``warm``: the keys known to be in the cache (after a real pool: what its jobs compiled); the
    others the timing process compiles itself. per_row is the timing process's cost per row."""
    jobs = warm_jobs(items, tf32) if workers > 0 else []
    warmup_s = pool_seconds([job_cost(j) for j in jobs], workers)
    if warm is None:
        warm = {k for j in jobs for k in j.keys}
    seen: set = set()
    per_row, compiles, compile_s, load_s, setup_s = [], 0, 0.0, 0.0, 0.0
    cell = None
    for item in items:
        s = 0.0
        if item.cell != cell:
            cell = item.cell
            s += cell_cost(item)
            setup_s += cell_cost(item)
        new = [k for k in kernel_keys(item, tf32) if k not in seen]
        seen.update(new)
        compiles += len(new)
        cold = [k for k in new if k not in warm]
        compile_s += sum(compile_cost(k) for k in cold)
        load_s += CACHE_LOAD_S * (len(new) - len(cold))
        s += item_cost(item, warmup_ms, rep_ms, nn_warmup_ms, nn_rep_ms, cold) + CACHE_LOAD_S * (len(new) - len(cold))
        per_row.append(s)
    timing_s = sum(per_row) - compile_s - load_s - setup_s
    total = STARTUP_S + warmup_s + sum(per_row)
    return {"rows": len(items), "cells": len(cells(items)), "compiles": compiles, "jobs": len(jobs),
            "workers": workers if jobs else 0, "seconds": round(total, 1), "per_row": per_row,
            "breakdown": {"startup_s": STARTUP_S, "warmup_s": round(warmup_s, 1),
                          "warmup_compile_s": round(sum(compile_cost(k) for j in jobs for k in j.keys), 1),
                          "compile_s": round(compile_s, 1), "cache_load_s": round(load_s, 1),
                          "cell_setup_s": round(setup_s, 1), "timing_s": round(timing_s, 1)}}


def dry_run_text(items, est: dict, budget_s: float) -> str:
    """The listing ``--dry-run`` prints: every row, then the counts and the estimate."""
    lines = [f"{i + 1:4d}  {item.describe()}" for i, item in enumerate(items)]
    b = est["breakdown"]
    lines += ["", f"{est['rows']} rows in {est['cells']} cells, {est['compiles']} distinct kernel compiles"]
    if est["workers"]:
        lines.append(f"warm-up pool: {est['jobs']} jobs on {est['workers']} workers, {b['warmup_compile_s']:.0f} s of "
                     f"compiles in {b['warmup_s']:.0f} s (worker start-up {WORKER_STARTUP_S:.0f} s, each compile "
                     f"x{PARALLEL_SLOWDOWN} beside the others)")
    lines.append(f"expected {est['seconds']:.0f} s on an H100 (startup {b['startup_s']:.0f} s, warm-up pool "
                 f"{b['warmup_s']:.0f} s, compiles in the timing process {b['compile_s']:.0f} s, cache loads "
                 f"{b['cache_load_s']:.0f} s, cell setup {b['cell_setup_s']:.0f} s, timing {b['timing_s']:.0f} s); "
                 f"budget {budget_s:.0f} s")
    return "\n".join(lines)
