"""Which recurrence strategy and block sizes run a GRU layer of a given shape.

  rows        grid (batch blocks, D). One program owns whole rows of the batch and all of H for
              the whole sequence: no cross-program sync. Wins when there are enough batch blocks
              to fill the GPU, or H is small.
  stepwise    grid (batch blocks, hidden blocks, D), one launch per step (two per step backward).
              Spreads a small batch with a large H over the GPU at the price of T launches.
  persistent  grid (hidden blocks, batch blocks, D), all resident; each program keeps its W_hh
              slice on-chip for the whole sequence and a grid barrier separates steps.
              The default on CUDA for bf16/fp16 wherever a plan fits: the compiled kernel runs
              without spills and its whole grid is co-resident, judged from its own registers
              and shared memory (resident_programs: the driver's occupancy query on a GPU).
              Should the device refuse the cooperative launch all the same, the dispatcher's
              next strategy runs, with one warning a process (persistent_refused). Measured on
              an H100 (bench/results/nvidia-h100-80gb-hbm3/strategies/) it beat rows, stepwise
              and cuDNN at every goal shape it holds. fp32: opt-in until its 3xTF32 path is GPU-tested (see
              PERSISTENT_DEFAULT_DTYPES). Under the interpreter only when forced, and only with a
              single hidden block.

Every GPU tile meets the tensor cores' minimum (16 on M, N and K, MMA_MIN), padding with masks
where H or B is smaller. Under the interpreter programs run one after another, so one program
per batch block with the whole of H in a single tile is cheapest, and tiles need not meet
tensor-core minimums (tests/test_gru_gpu_tiles.py runs the GPU's tiles there explicitly).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

import torch

from .. import gpu
from . import plan_table
from .launch import Resources
# The persistent choices are the planner's vocabulary (plan.PersistentVariant, ...), defined below it
# so that the measured table can read them without importing the planner.
from .persistent_choice import (BASE_VARIANT, DEFAULT_CHOICE, PERSISTENT_BLOCK_H, VARIANT_PRECISIONS,  # noqa: F401
                                VARIANT_SWITCHES, PersistentChoice, PersistentVariant)

# The recurrence kernels; ``cudnn`` (PyTorch's own GRU operator, run by the functional layer where
# the measured table says no kernel wins) completes what ``strategy=`` accepts.
KERNEL_STRATEGIES = ("rows", "stepwise", "persistent")
STRATEGIES = KERNEL_STRATEGIES + ("cudnn",)

# The smallest M, N and K a tensor-core dot compiles with (Triton's NVIDIA backend refuses a
# smaller one for every dtype, fp32 and fp64 included). Every GPU tile meets it; masks cover
# the padding.
MMA_MIN = 16

# Dtypes for which the dispatcher picks `persistent` by itself (where its plan fits). bf16/fp16
# passed the CUDA parity and bitwise-repeatability tests on an H100 and won every goal shape they
# hold (bench/results/nvidia-h100-80gb-hbm3/strategies/). fp32 joins once its 3xTF32 path has
# passed the same tests on a GPU (it was measured only with plain TF32, which the parity contract
# refuses where cuDNN stays in fp32).
PERSISTENT_DEFAULT_DTYPES = (torch.bfloat16, torch.float16)


# Gate tiles of W_hh a persistent program holds, per recurrence family.
GATES = {"gru": 3, "lstm": 4}


@dataclass(frozen=True)
class GRUPlan:
    strategy: str
    block_b: int
    block_h: int
    block_k: int
    batch_blocks: int
    hidden_blocks: int
    num_warps: int
    bwd_num_warps: int | None = None  # the backward kernel's, when it differs
    variant: PersistentVariant = field(default=BASE_VARIANT)  # persistent only

    def __post_init__(self):
        # A plan read back from a record (dataclasses.asdict's dict, or the variant's name) is the plan.
        if isinstance(self.variant, dict):
            object.__setattr__(self, "variant", PersistentVariant(**self.variant))
        elif isinstance(self.variant, str):
            object.__setattr__(self, "variant", PersistentVariant.parse(self.variant))

    @property
    def backward_warps(self) -> int:
        return self.bwd_num_warps or self.num_warps

    def blocks(self) -> dict:
        if self.strategy == "persistent":
            return {"BLOCK_B": self.block_b, "BLOCK_H": self.block_h, "BLOCK_HP": self.block_k}
        return {"BLOCK_B": self.block_b, "BLOCK_H": self.block_h, "BLOCK_K": self.block_k}

    @property
    def programs(self) -> int:
        return self.batch_blocks * self.hidden_blocks


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _plan(strategy, B, H, block_b, block_h, block_k, num_warps, bwd_num_warps=None) -> GRUPlan:
    return GRUPlan(strategy, block_b, block_h, block_k, _cdiv(B, block_b), _cdiv(H, block_h), num_warps, bwd_num_warps)


def persistent_candidates(B: int, H: int, D: int) -> list[GRUPlan]:
    """Persistent plans for a shape, in the order tried: each hidden block of PERSISTENT_BLOCK_H
    with a 4-warp forward (measured 1.2-1.4x faster than 8, bf16 inference, B 1-8, H 256-1024),
    then with 8 (half the registers a thread, where 4 spill); the backward always 8. The batch
    sits on the MMA's N side: one block of up to 64 rows (16 at least, the MMA's minimum); the
    K side spans all of H, padded to a power of two and to the MMA's minimum (H <= 8 would
    otherwise give a K the compiler rejects)."""
    block_b = min(max(MMA_MIN, _pow2(B)), 64)
    hp = max(MMA_MIN, _pow2(H))
    sizes = [bh for bh in PERSISTENT_BLOCK_H if bh <= hp]
    return [_plan("persistent", B, H, block_b, bh, hp, w, bwd_num_warps=8) for bh in sizes for w in (4, 8)]


def resident_programs(res: Resources, device) -> int:
    """How many programs of a compiled kernel one SM holds at once (0 when it spills or cannot
    run at all). The driver's own occupancy query where there was a driver to ask
    (``res.resident``: it knows the shared-memory carve-out, the allocation granularities and
    the per-SM block limit); otherwise, under the compile check, an estimate: the least of what
    the kernel's registers, shared memory and threads allow."""
    if res.spill_bytes:
        return 0
    if res.resident is not None:
        return res.resident
    regs_per_sm, smem_per_sm, smem_per_block = gpu.sm_limits(device)
    if res.shared_bytes > smem_per_block:
        return 0
    threads = 32 * res.num_warps
    warp_regs = -(-res.registers * 32 // 256) * 256  # registers are allocated per warp, 256 at a time
    by_regs = regs_per_sm // (warp_regs * res.num_warps)
    by_smem = smem_per_sm // (res.shared_bytes + 1024) if res.shared_bytes else by_regs  # 1 KB reserved per block
    return min(by_regs, by_smem, 2048 // threads, 32)


_forced_choice: PersistentChoice | None = None


@contextmanager
def persistent_choice(variant: PersistentVariant | str = BASE_VARIANT, block_h: int | None = None,
                      num_warps: int | None = None) -> Iterator[PersistentChoice]:
    """Benchmarks and tests: every persistent plan made inside the block runs ``variant`` (a
    PersistentVariant or its name) and, where given, only hidden block ``block_h`` and
    ``num_warps`` forward warps, whatever the measured table says. Process-wide (plans are made
    on the calling thread); the previous choice is restored on exit."""
    global _forced_choice
    if isinstance(variant, str):
        variant = PersistentVariant.parse(variant)
    if block_h is not None and block_h not in PERSISTENT_BLOCK_H:
        raise ValueError(f"block_h must be one of {PERSISTENT_BLOCK_H}, got {block_h!r}")
    if num_warps is not None and num_warps not in (4, 8):
        raise ValueError(f"num_warps must be 4 or 8, got {num_warps!r}")
    before, _forced_choice = _forced_choice, PersistentChoice(variant, block_h, num_warps)
    try:
        yield _forced_choice
    finally:
        _forced_choice = before


def _persistent_plan(B, H, D, device, dtype, resources: Callable[[GRUPlan], Optional[Resources]],
                     choice: PersistentChoice | None = None, family: str = "gru") -> GRUPlan | None:
    """The first candidate whose compiled kernel (``resources`` compiles it) runs without spills
    and whose whole grid is co-resident, as the grid barrier needs; None when none is. A
    candidate whose weight tiles alone exceed one block's shared memory (where the compiler
    stages them) is passed over without compiling. ``choice`` (a forced one first: see
    persistent_choice) sets the variant and may narrow the candidates to one block and warp count.
    ``family``: "gru" (three gate tiles of W_hh a program) or "lstm" (four)."""
    choice = _forced_choice or choice or DEFAULT_CHOICE
    sms = gpu.sm_count(device)
    smem_per_block = gpu.sm_limits(device)[2]
    weight_bytes = torch.finfo(dtype).bits // 8
    for plan in persistent_candidates(B, H, D):
        if choice.block_h is not None and plan.block_h != choice.block_h:
            continue
        if choice.num_warps is not None and plan.num_warps != choice.num_warps:
            continue
        plan = replace(plan, variant=choice.variant)
        if plan.programs * D > sms * 32 or GATES[family] * plan.block_h * plan.block_k * weight_bytes > smem_per_block:
            continue
        res = resources(plan)
        if res is not None and plan.programs * D <= sms * resident_programs(res, device):
            return plan
    return None


def tile_candidates(strategy: str, B: int, H: int) -> list[GRUPlan]:
    """rows / stepwise (and the cell) tiles, in the order tried: the measured default, then
    leaner ones (a shorter K step, smaller hidden blocks with more warps, then a 16-row batch
    block) for the dtypes and unaligned H whose compiled kernel spills with it. Tensor-core
    tiles need M, N, K >= 16."""
    block_b = 16 if B <= 16 else 32
    block_h = max(16, min(_pow2(H), 64))
    narrow = min(block_h, 32)
    tiles = [(block_b, block_h, block_h, 4 if block_b * block_h <= 1024 else 8), (block_b, block_h, narrow, 8),
             (block_b, narrow, narrow, 8), (block_b, 16, 16, 4), (16, narrow, narrow, 8), (16, 16, 16, 8)]
    return [_plan(strategy, B, H, bb, bh, bk, w) for bb, bh, bk, w in dict.fromkeys(tiles)]


def _lean_plan(candidates: list[GRUPlan], resources) -> GRUPlan:
    """The first candidate whose compiled kernel does not spill (the last, leanest, if all do);
    the first without a way to compile (``resources`` None)."""
    if resources is None:
        return candidates[0]
    for plan in candidates:
        res = resources(plan)
        if res is not None and res.spill_bytes == 0:
            return plan
    return candidates[-1]


# Shapes whose cooperative launch the device refused: the dispatcher does not pick persistent for
# them again in this process. One warning per process (_warned), at the first refusal.
_refused: set = set()
_warned = False


class PersistentFallbackWarning(RuntimeWarning):
    """The device refused a persistent launch the dispatcher had planned; another strategy ran."""


def _shape_key(B, H, D, device, dtype):
    device = device.device if isinstance(device, torch.Tensor) else torch.device(device)
    return B, H, D, str(device), dtype


def was_refused(B: int, H: int, D: int, device, dtype) -> bool:
    """True once the device has refused a persistent launch of this shape in this process."""
    return _shape_key(B, H, D, device, dtype) in _refused


def persistent_refused(B: int, H: int, D: int, device, dtype, exc: BaseException, forced: bool) -> None:
    """A persistent launch of this shape failed at launch (``exc``, a RuntimeError from the
    driver: its grid was not co-resident after all -- an MPS limit, a shared-memory carve-out the
    occupancy query did not foresee). Forced (``strategy='persistent'``): a RuntimeError that
    says so. The dispatcher's own pick: the shape is remembered, so plan_gru plans another
    strategy for it from now on, and the first refusal in the process warns (once)."""
    if forced:
        raise RuntimeError(
            f"strategy='persistent': the device refused the cooperative launch for B={B}, H={H}, D={D} in {dtype} "
            f"({exc}); its grid is not co-resident on this device. Leave strategy=None to let the dispatcher fall "
            "back to another strategy"
        ) from exc
    global _warned
    _refused.add(_shape_key(B, H, D, device, dtype))
    if not _warned:
        _warned = True
        warnings.warn(
            f"fastgru: the device refused a persistent kernel's cooperative launch for B={B}, H={H}, D={D} in "
            f"{dtype} ({exc}); running another strategy for this shape from now on. This warning is shown once per "
            "process; later refusals fall back silently",
            PersistentFallbackWarning, stacklevel=3,
        )


def table_choice(B: int, H: int, D: int, device, dtype, mode: str = "inference", reset_after: bool = True):
    """The measured table's entry for this call (plan_table.py), or None where it has none
    (no real GPU, a shape or dtype it was not measured at)."""
    return plan_table.lookup(plan_table.key_for(device, dtype, mode, reset_after, D, H, B))


def _rule(B, H, D, device, dtype, strategy, resources, why="", family="gru") -> tuple[GRUPlan, str]:
    """Today's rules (where the table has no entry, or its choice cannot run here)."""
    wants_persistent = strategy == "persistent" or (
        strategy is None and dtype in PERSISTENT_DEFAULT_DTYPES and not was_refused(B, H, D, device, dtype))
    if wants_persistent and resources is not None:
        plan = _persistent_plan(B, H, D, device, dtype, resources, family=family)
        if plan is not None:
            return plan, why + ("forced" if strategy else "rule: bf16/fp16 run persistent where a plan fits")
    if strategy == "persistent":
        raise ValueError(
            f"strategy='persistent' cannot hold B={B}, H={H}, D={D} in {dtype} on {gpu.sm_count(device)} SMs: "
            "no hidden block size compiles without spills with its whole grid co-resident"
            + (f" ({_forced_choice})" if _forced_choice else "")
        )
    if strategy is None:
        # rows keeps everything in one launch but uses only batch_blocks * D programs; when that
        # leaves most SMs idle and H is large, stepwise's parallelism over H pays for its T launches.
        # Measured on an H100 (T=512, B 1-128): rows wins at H=256 (1.0-2.2x), stepwise from
        # H=512 (1.3-10x).
        idle = _cdiv(B, 16 if B <= 16 else 32) * D * 4 < gpu.sm_count(device)
        strategy = "stepwise" if idle and H >= 512 else "rows"
        why += ("rule: stepwise (H >= 512 and rows would leave most SMs idle)" if strategy == "stepwise"
                else "rule: rows (H < 512, or its batch blocks fill the SMs)")
    else:
        why += "forced"
    return _lean_plan(tile_candidates(strategy, B, H), resources), why


def plan_with_reason(
    B: int, H: int, D: int, device, strategy: str | None = None, dtype=torch.float32,
    resources: Callable[[GRUPlan], Optional[Resources]] | None = None, mode: str = "inference",
    reset_after: bool = True, family: str = "gru",
) -> tuple[GRUPlan, str]:
    """plan_gru, and why: "forced", the table entry taken, or the rule applied. ``family``: "gru",
    or "lstm" (four gate tiles; the measured table holds GRU entries only, so the rules plan it)."""
    if family not in GATES:
        raise ValueError(f"family must be one of {tuple(GATES)}, got {family!r}")
    if strategy is not None and strategy not in KERNEL_STRATEGIES:
        raise ValueError(f"strategy must be one of {KERNEL_STRATEGIES} or None here, got {strategy!r}")
    if _forced_choice is not None:
        _forced_choice.variant.check(dtype, reset_after)
    if not gpu.on_gpu(device):
        block_b = min(_pow2(max(B, 1)), 16)
        block_h = min(_pow2(H), 64)
        if strategy == "persistent":
            if H > block_h:
                raise ValueError(
                    f"strategy='persistent' under the interpreter needs one hidden block (H <= {block_h}), got H={H}: "
                    "its grid barrier would wait on programs the interpreter runs later"
                )
            variant = (_forced_choice or DEFAULT_CHOICE).variant
            return replace(_plan("persistent", B, H, block_b, block_h, _pow2(H), 4), variant=variant), "forced"
        return _plan(strategy or "rows", B, H, block_b, block_h, block_h, 4), (
            "forced" if strategy else "interpreter: rows, one tile over all of H")
    if strategy is not None:
        return _rule(B, H, D, device, dtype, strategy, resources, family=family)
    entry = table_choice(B, H, D, device, dtype, mode, reset_after) if family == "gru" else None
    if entry is None:
        return _rule(B, H, D, device, dtype, None, resources, family=family)
    chosen, why = entry["strategy"], plan_table.describe(entry)
    if chosen == "persistent" and resources is not None and not was_refused(B, H, D, device, dtype):
        plan = _persistent_plan(B, H, D, device, dtype, resources, PersistentChoice.of_entry(entry))
        if plan is not None:
            return plan, why
    elif chosen in ("rows", "stepwise"):
        return _lean_plan(tile_candidates(chosen, B, H), resources), why
    # The table's choice cannot run here (cudnn turned down by the caller, persistent not fitting).
    return _rule(B, H, D, device, dtype, None, resources, why=f"{why}, not available here; ")


def plan_gru(
    B: int, H: int, D: int, device, strategy: str | None = None, dtype=torch.float32,
    resources: Callable[[GRUPlan], Optional[Resources]] | None = None, mode: str = "inference",
    reset_after: bool = True, family: str = "gru",
) -> GRUPlan:
    """Strategy and tile sizes for batch B, hidden H, D directions on ``device``.
    ``strategy`` forces a choice (benchmarks, tests); None takes the measured table's entry for
    (device arch, dtype, ``mode``, ``reset_after``, D, H, B) where it has one and the rules below
    where it has none. ``resources`` gives the compiled kernel's footprint for a candidate plan
    (the launcher builds and compiles it, so the fit is the real kernel's): persistent needs it
    (without it persistent is not considered); rows and stepwise use it to step down to leaner
    tiles where a tile spills."""
    return plan_with_reason(B, H, D, device, strategy, dtype, resources, mode, reset_after, family)[0]
