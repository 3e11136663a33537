"""Per-step latency model of the persistent GRU kernel: a prediction, written before any GPU run.

``python bench/latency_model.py --out DIR [--variants base,prefetch,...]`` compiles each variant
of the persistent forward for sm_90 through the real launcher (the compile check's stand-in
driver, bench/compile/driver.py: no GPU needed), reads the critical path of one step from the
kernel's PTX, and predicts its time per step on an H100 from four inputs:

  (a) the grid barrier, measured: bench/results/nvidia-h100-80gb-hbm3/barrier/2026-11-23-run2/
      barrier_floor.json (run 1 agrees to 0.01 us): 0.66 us at 1 program, 0.77 at 8, 0.90 at 32,
      0.93 at 66, 1.00 at 132 (BARRIER_FLOOR_US, interpolated in log2 of the grid);
  (b) an L2 round trip, ASSUMED: L2_ROUND_TRIP_CYCLES;
  (c) the tensor cores' latency and rate, ASSUMED: MMA_SYNC_LATENCY_CYCLES, WGMMA_LATENCY_CYCLES,
      the rate from the H100's dense bf16 peak;
  (d) the compiled kernel's instructions on the critical path, COUNTED from its PTX (the part of
      this file under "PTX: the step's critical path").

The model, per step (every term in the JSON and the table):

  t = sum over the step's barriers of max(floor(G), off-path work of that barrier)
      + L2 x (blocking load rounds + 1 if the path stores before its arrive)
      + MMA time + (other + shared) x ALU_CPI + MUFU x MUFU_CYCLES + bar.sync x BAR_SYNC_CYCLES

G is the number of programs meeting at a barrier (the hidden blocks of one batch block). A load
round blocks when a result of it is used before the step's arrive (a prefetch does not); loads
between two bar.sync are issued together and count once. The release of the arrive waits for the
path's stores: one more round. MMA time: mma.sync, max(dependent chain x latency, count x issue
time); wgmma, latency + count x issue time; the chain is BLOCK_HP / k per barrier phase (x3 for
3xTF32). Off-path work (what a split barrier does between arrive and wait) hides under the barrier
unless longer than it. Counts are per warp (one thread's PTX stream).

What it leaves out: overlap between categories on the path (it adds them: an upper bound for the
path, a lower bound where the PTX order hides stalls ptxas adds), bank conflicts, the L2's two
partitions, clock changes, spills (a spilled kernel is marked; its local-memory traffic is not
priced), the backward. It is a prediction to set beside the GPU run's numbers, nothing more.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field

if __package__ in (None, ""):  # python bench/latency_model.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ---------------------------------------------------------------------------------------------
# PTX: the step's critical path
#
# The time loop and its barriers are found in the PTX text alone:
# 1. Instructions: every line that is neither a directive (.reg, .loc, ...), a label, a brace nor
#    a comment; comments (//) are stripped first.
# 2. Loops: a branch (bra) to a label earlier in the text closes a loop spanning the label to
#    the branch (LLVM lays a loop out contiguously; a rotated loop's latch may come first, which
#    the cyclic reading of step 4 absorbs).
# 3. The time loop: the widest loop holding a grid-barrier arrive (red/atom/st with .release);
#    without one, the widest loop holding any atom/red.
# 4. Barrier sections: the time loop read as a cycle (the step repeats). Each arrive starts a
#    section; it ends at the last .acquire before the next arrive, extended to the end of the
#    innermost loop around it (the spin). bar.sync right before the arrive or right after the
#    wait (only non-memory instructions between) belongs to the section: the measured floor
#    includes them. What else lies inside a section is off-path work.
# 5. The critical path: the rest of the loop body.
# ---------------------------------------------------------------------------------------------

_LABEL = re.compile(r"^\s*(\$?[\w.$]+):")
_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$?[\w.$]+)\s*;")
_PRED = re.compile(r"^@!?%\w+\s+")
_REG = re.compile(r"%[a-z]+\d+")

# Categories of instructions counted (by opcode prefix; the first that matches wins).
CATEGORIES = ("ld_global", "st_global", "atomic", "mma", "mufu", "shared", "bar_sync", "other")
MUFU_OPS = ("ex2", "lg2", "rcp", "rsqrt", "sqrt", "sin", "cos", "tanh", "div")


@dataclass(frozen=True)
class Instr:
    index: int  # position among the instructions
    text: str  # without predicate guard or trailing ';'
    labels: tuple = ()  # the labels right before it
    guarded: bool = False

    @property
    def opcode(self) -> str:
        return self.text.split(None, 1)[0] if self.text else ""

    @property
    def category(self) -> str:
        return category(self.opcode)


def category(opcode: str) -> str:
    """The CATEGORIES entry of a PTX opcode (``ld.global.cg.v4.b32``, ``mma.sync.aligned...``)."""
    parts = opcode.split(".")
    head = parts[0]
    if head in ("atom", "red"):
        return "atomic"
    if head == "ld" and "global" in parts:
        return "ld_global"
    if head == "st" and "global" in parts:
        return "st_global"
    if head in ("mma", "wgmma") and ("mma_async" in parts or head == "mma"):
        return "mma"
    if head in MUFU_OPS and ("approx" in parts or "full" in parts or head in ("tanh",)):
        return "mufu"
    if head in ("ld", "st", "ldmatrix", "stmatrix") and any(p.startswith("shared") for p in parts):
        return "shared"
    if head in ("bar", "barrier") and len(parts) > 1 and parts[1] in ("sync", "cta"):
        return "bar_sync"
    return "other"


def instructions(ptx: str) -> list[Instr]:
    """The executable instructions of ``ptx`` in text order (see the module docstring, step 1).
    Only the first ``.entry`` is read (Triton emits one kernel per module)."""
    out: list[Instr] = []
    pending: list = []
    in_entry = False
    depth = 0  # braces: the entry's body, and the scopes of inline asm inside it
    for raw in ptx.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if not in_entry:
            in_entry = line.startswith(".visible .entry") or line.startswith(".entry")
            continue
        if line.startswith("{") and not line.startswith("{ %"):
            depth += 1
        if line.startswith("}"):
            depth -= 1
            if depth <= 0:
                break
            continue
        m = _LABEL.match(line)
        if m and not line.startswith("."):
            pending.append(m.group(1))
            line = line[m.end():].strip()
            if not line:
                continue
        if line.startswith((".", "{", "}", ")", "(")):
            continue
        for stmt in (s.strip() for s in line.split(";")):
            if not stmt:
                continue
            guarded = bool(_PRED.match(stmt))
            out.append(Instr(len(out), _PRED.sub("", stmt), tuple(pending), guarded))
            pending = []
    return out


def branch_target(instr: Instr) -> str | None:
    m = _BRANCH.search(instr.text + ";")
    return m.group(1) if m and instr.opcode.startswith("bra") else None


def loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """(first, last) instruction index of every loop: a label and the last backward branch to it."""
    where = {label: ins.index for ins in instrs for label in ins.labels}
    spans: dict[int, int] = {}
    for ins in instrs:
        target = branch_target(ins)
        if target in where and where[target] <= ins.index:
            start = where[target]
            spans[start] = max(spans.get(start, start), ins.index)
    return sorted(spans.items())


def is_arrive(ins: Instr) -> bool:
    return ".release" in ins.opcode and ins.opcode.split(".")[0] in ("atom", "red", "st")


def is_acquire(ins: Instr) -> bool:
    return ".acquire" in ins.opcode and ins.opcode.split(".")[0] in ("atom", "ld")


def time_loop(instrs: list[Instr]) -> tuple[int, int]:
    """The step loop's span (module docstring, step 3). ValueError where the PTX has no loop with
    a grid barrier or atomic: nothing to model."""
    spans = loops(instrs)
    for test in (is_arrive, lambda i: i.category == "atomic"):
        holding = [(a, b) for a, b in spans if any(test(i) for i in instrs[a:b + 1])]
        if holding:
            return max(holding, key=lambda s: s[1] - s[0])
    raise ValueError("the PTX has no loop with a grid-barrier arrive or an atomic: not a persistent kernel's time loop")


@dataclass
class Section:
    """One grid barrier in the step: [start, end] as positions in the cyclic loop body."""

    arrive: int
    start: int
    end: int
    own: set = field(default_factory=set)  # positions of the barrier's own instructions


@dataclass
class StepPath:
    """One step of the time loop: its barriers, and the counts on and off the critical path."""

    loop: tuple[int, int]
    barriers: int
    path: dict  # category -> count on the critical path
    off_path: list  # per barrier: category -> count of the work done between its arrive and wait
    loop_counts: dict  # category -> count in the whole loop body (the step, barriers included)
    path_instrs: list = field(repr=False, default_factory=list)
    off_instrs: list = field(repr=False, default_factory=list)


def _counts(instrs) -> dict:
    out = dict.fromkeys(CATEGORIES, 0)
    for ins in instrs:
        out[ins.category] += 1
    out["total"] = sum(out[c] for c in CATEGORIES)
    return out


def _memoryless(ins: Instr) -> bool:
    return ins.category in ("other", "bar_sync")


def step_path(ptx_or_instrs) -> StepPath:
    """The critical path of one step of the persistent kernel in ``ptx`` (module docstring)."""
    instrs = instructions(ptx_or_instrs) if isinstance(ptx_or_instrs, str) else ptx_or_instrs
    first, last = time_loop(instrs)
    body = instrs[first:last + 1]
    n = len(body)
    inner = [(a - first, b - first) for a, b in loops(instrs) if first <= a and b <= last and (a, b) != (first, last)]
    arrives = [k for k, ins in enumerate(body) if is_arrive(ins)]
    sections: list[Section] = []
    for j, k in enumerate(arrives):
        nxt = arrives[(j + 1) % len(arrives)] if len(arrives) > 1 else k + n
        acquires = [p for p in range(k + 1, nxt) if is_acquire(body[p % n])]
        end = acquires[-1] if acquires else k
        own = {k % n} | {p % n for p in acquires}
        for a, b in inner:  # the spin loop(s) around the last acquire
            if a <= end % n <= b:
                end = max(end, end - end % n + b)
                own |= set(range(a, b + 1))
        start = k
        while _memoryless(body[(start - 1) % n]) and start - 1 > end - n:  # bar.sync before the arrive
            start -= 1
            if body[start % n].category == "bar_sync":
                own.add(start % n)
        p = end
        while p + 1 < start + n and _memoryless(body[(p + 1) % n]):  # bar.sync after the wait
            p += 1
            if body[p % n].category == "bar_sync":
                own.add(p % n)
                end = p
        sections.append(Section(k, start, end, own))
    in_section: dict[int, int] = {}
    for j, s in enumerate(sections):
        for p in range(s.start, s.end + 1):
            in_section[p % n] = j
    path = [body[p] for p in range(n) if p not in in_section]
    off = [[body[p % n] for p in range(s.start, s.end + 1) if p % n not in s.own and body[p % n].category != "bar_sync"
            and branch_target(body[p % n]) is None] for s in sections]
    return StepPath((first, last), len(sections), _counts(path), [_counts(o) for o in off], _counts(body), path, off)


def blocking_load_rounds(path: list[Instr]) -> int:
    """Global-memory round trips the critical path waits for: groups of global loads between two
    ``bar.sync`` (loads issued together overlap) of which some result is used on the path before
    the step's end. A load whose result is first used next step (a prefetch) blocks nothing."""
    rounds = 0
    group_blocks = False
    for k, ins in enumerate(path):
        if ins.category == "bar_sync":
            rounds += group_blocks
            group_blocks = False
        elif ins.category == "ld_global" and not is_acquire(ins) and not group_blocks:
            dests = _destinations(ins)
            group_blocks = any(_uses(later, dests) for later in path[k + 1:])
    return rounds + group_blocks


def _destinations(ins: Instr) -> set:
    """The registers a load writes: ``ld... {%r1, %r2}, [addr]`` or ``ld... %r1, [addr]``."""
    operands = ins.text.split(None, 1)[1] if " " in ins.text or "\t" in ins.text else ""
    head = operands.split("[", 1)[0]
    return set(_REG.findall(head))


def _uses(ins: Instr, regs: set) -> bool:
    return bool(regs) and any(r in regs for r in _REG.findall(ins.text))


def mma_shape(path: list[Instr]) -> tuple[str, int, int, int] | None:
    """(kind, m, n, k) of the first MMA on the path: 'mma.sync' or 'wgmma'."""
    for ins in path:
        if ins.category == "mma":
            m = re.search(r"\.m(\d+)n(\d+)k(\d+)", ins.opcode)
            kind = "wgmma" if ins.opcode.startswith("wgmma") else "mma.sync"
            return (kind, *map(int, m.groups())) if m else (kind, 16, 8, 16)
    return None


# ---------------------------------------------------------------------------------------------
# The model's inputs
# ---------------------------------------------------------------------------------------------

# (a) Measured: us per grid barrier by grid size, bench/results/nvidia-h100-80gb-hbm3/barrier/
# 2026-11-23-run2/barrier_floor.json (barrier_probe's counter barrier, 2000 steps, median).
BARRIER_FLOOR_US = {1: 0.657, 8: 0.769, 32: 0.902, 66: 0.925, 132: 1.00}
BARRIER_FLOOR_SOURCE = "bench/results/nvidia-h100-80gb-hbm3/barrier/2026-11-23-run2/barrier_floor.json"
# ASSUMED: the SM clock under this load (H100 SXM: boost up to 1.98 GHz; 1.755 GHz is the boost
# clock Chips and Cheese's H100 article reports, the lower of the two).
CLOCK_GHZ = 1.755
# (b) ASSUMED: an L2 hit's round trip. Published Hopper microbenchmarks put it at about 200-300
# cycles (Chips and Cheese, "Nvidia's H100: Funny L2, and Tons of Bandwidth", 2023; Luo et al.,
# "Benchmarking and Dissecting the Nvidia Hopper GPU Architecture", arXiv 2402.13499): 260 cycles,
# 0.15 us at CLOCK_GHZ. Consistent with the measured floor: one barrier (release-add, acquire
# poll) is two to four such trips, 0.66 us.
L2_ROUND_TRIP_CYCLES = 260
# (c) ASSUMED: a dependent mma.sync (m16n8k16) returns after about 33 cycles (the figure Ampere
# and Hopper microbenchmarks report for HMMA.16816); a wgmma's first result after about 100
# cycles, later ones in its chain pipelined. Issue rate: the dense bf16 peak (989 TFLOPS on 132
# SMs: TC_FMA_PER_SM_CYCLE), a quarter of it per warp for mma.sync at MMA_SYNC_EFFICIENCY of it
# (mma.sync does not reach wgmma's rate on Hopper); TF32 at half the rate.
MMA_SYNC_LATENCY_CYCLES = 33
WGMMA_LATENCY_CYCLES = 100
TC_FMA_PER_SM_CYCLE = 989e12 / 2 / 132 / (CLOCK_GHZ * 1e9)
MMA_SYNC_EFFICIENCY = 0.5
# ASSUMED: other instructions on the path: 2 cycles each (a dependent ALU result takes about 4
# cycles, about half of the path's instructions wait on the one before); shared-memory accesses
# the same (their latency mostly sits behind the bar.sync that orders them); a MUFU instruction
# (ex2, rcp, div.full) 8 cycles (16 lanes per SM: a warp's instruction on one sub-partition);
# a bar.sync of one CTA 20 cycles.
ALU_CPI = 2.0
MUFU_CYCLES = 8.0
BAR_SYNC_CYCLES = 20.0

# The goal, us per step at H 256 / 512 / 1024, and the measured old kernel (bf16
# inference, B = 1, 4 warps: bench/results/nvidia-h100-80gb-hbm3/strategies/2026-11-23-run2/
# strategies-persistent-w4.json).
GOAL_US = {256: 1.0, 512: 1.2, 1024: 2.0}
MEASURED_OLD_US = {256: 3.9, 512: 5.3, 1024: 10.9}


def barrier_floor_us(grid: int) -> float:
    """The measured floor at ``grid`` programs: linear in log2(grid) between the measured grids,
    the end values outside them."""
    pts = sorted(BARRIER_FLOOR_US.items())
    if grid <= pts[0][0]:
        return pts[0][1]
    for (g0, t0), (g1, t1) in zip(pts, pts[1:]):
        if grid <= g1:
            f = (math.log2(grid) - math.log2(g0)) / (math.log2(g1) - math.log2(g0))
            return t0 + f * (t1 - t0)
    return pts[-1][1]


def _us(cycles: float) -> float:
    return cycles / (CLOCK_GHZ * 1e3)


def mma_cycles(shape, count: int, k_total: int, phases: int, passes: int) -> float:
    """Time of the path's ``count`` MMAs of ``shape`` (kind, m, n, k): see the module docstring."""
    if not count or shape is None:
        return 0.0
    kind, m, n, k = shape
    tf32 = k == 8  # m16n8k8 / m64nNk8: the TF32 shapes
    rate = TC_FMA_PER_SM_CYCLE / (2 if tf32 else 1)
    if kind == "wgmma":
        return phases * WGMMA_LATENCY_CYCLES + count * m * n * k / rate
    issue = m * n * k / (rate / 4 * MMA_SYNC_EFFICIENCY)
    chain = phases * passes * max(1, k_total // k)
    return max(chain * MMA_SYNC_LATENCY_CYCLES, count * issue)


def _work_cycles(counts: dict, rounds: int) -> float:
    return (rounds * L2_ROUND_TRIP_CYCLES + (counts["other"] + counts["shared"]) * ALU_CPI
            + counts["mufu"] * MUFU_CYCLES + counts["bar_sync"] * BAR_SYNC_CYCLES)


def predict(step: StepPath, grid: int, k_total: int, passes: int = 1) -> dict:
    """The per-step prediction (us) and its terms for a kernel whose step is ``step``, with
    ``grid`` programs at each barrier and a K side of ``k_total`` (BLOCK_HP); ``passes`` MMAs a
    K step (3 for 3xTF32)."""
    floor = barrier_floor_us(grid)
    path = step.path
    stores = path["st_global"] + path["atomic"]
    rounds = blocking_load_rounds(step.path_instrs) + (1 if stores else 0)
    shape = mma_shape(step.path_instrs)
    phases = max(1, step.barriers)
    t_mma = _us(mma_cycles(shape, path["mma"], k_total, phases, passes))
    t_l2 = _us(rounds * L2_ROUND_TRIP_CYCLES)
    t_alu = _us((path["other"] + path["shared"]) * ALU_CPI)
    t_mufu = _us(path["mufu"] * MUFU_CYCLES)
    t_bar_sync = _us(path["bar_sync"] * BAR_SYNC_CYCLES)
    off = [_us(_work_cycles(o, 1 if (o["ld_global"] + o["st_global"]) else 0)) for o in step.off_path]
    t_barriers = sum(max(floor, w) for w in off) if off else floor * phases
    total = t_barriers + t_l2 + t_mma + t_alu + t_mufu + t_bar_sync
    return dict(us_per_step=round(total, 3), barrier_us=round(t_barriers, 3), floor_us=round(floor, 3),
                barriers=step.barriers, l2_rounds=rounds, l2_us=round(t_l2, 3), mma_us=round(t_mma, 3),
                alu_us=round(t_alu, 3), mufu_us=round(t_mufu, 3), bar_sync_us=round(t_bar_sync, 3),
                off_path_us=[round(w, 3) for w in off], mma_shape=list(shape) if shape else None)


# ---------------------------------------------------------------------------------------------
# Compiling the variants (the compile check's stand-in driver and target; no GPU)
# ---------------------------------------------------------------------------------------------

MODES = ("inference", "training")


@dataclass(frozen=True)
class Case:
    variant: str
    dtype: str  # "bf16" or "fp32-tf32"
    H: int
    B: int
    block_h: int
    num_warps: int
    mode: str = "inference"  # the forward with SAVE=False (inference) or True (training)
    reset_after: bool = True


def default_cases(variants, dtypes, hs, bs, blocks, warps, modes) -> list:
    """The cases to model: every variant x dtype x H x B x block x warps x mode given; a variant
    meant for the other formulation (recompute) runs reset_after=False beside its two-barrier twin
    (the same switches without recompute, reset_after=False: what it must beat), fp32 takes the
    precisions (a variant without one gets each of bench/variants.PRECISIONS)."""
    from bench import variants as V

    out = []
    for dtype in dtypes:
        for name in variants:
            names = [name]
            if dtype != "bf16" and not any(p in name.split("+") for p in V.PRECISIONS):
                names = [p if name == "base" else f"{name}+{p}" for p in V.PRECISIONS]
            if dtype == "bf16" and any(p in name.split("+") for p in V.PRECISIONS):
                continue
            forms = []
            for n in names:
                parts = n.split("+")
                if "recompute" in parts:
                    forms += [(n, False), ("+".join(q for q in parts if q != "recompute") or "base", False)]
                else:
                    forms.append((n, True))
            for n, reset_after in forms:
                for mode in modes:
                    for H in hs:
                        for B in bs:
                            for bh in blocks:
                                for w in warps:
                                    out.append(Case(n, dtype, H, B, bh, w, mode, reset_after))
    return out


def compile_cases(cases: list, arch: int = 90, log=print) -> list:
    """Compile each case's forward through the real launcher for ``arch`` and model it: one dict
    per case (the case, its status, the compile's registers/spills, the counts, the prediction).
    Installs the stand-in driver: call before anything imports a kernel module."""
    from bench.compile import driver

    driver.install(arch)
    import torch

    from bench.compile.cases import DTYPES, tf32
    from bench.compile.target import CompileTarget, arch as arch_of
    from fastgru import gpu
    from fastgru.launchers import gru_layer as AG
    from fastgru.launchers.launch import compiling, untuned
    from fastgru.launchers.plan import PersistentVariant, persistent_choice

    class PTXTarget(CompileTarget):
        """The compile check's target, keeping the PTX of each persistent launch it compiles."""

        def __init__(self, a):
            super().__init__(a)
            self.ptx: dict = {}

        def launch(self, job):
            super().launch(job)
            if "persistent" in job.name:
                meta, grid = next(self._variants(job))
                compiled = untuned(job.kernel).warmup(*job.args, grid=grid, **meta)
                self.ptx[job.name] = (compiled.asm["ptx"], meta, grid)

    a = arch_of(arch)
    out = []
    for case in cases:
        target = PTXTarget(a)
        dt = DTYPES[case.dtype][0]
        z = lambda *s: torch.zeros(s, dtype=dt)  # noqa: E731
        T, I, D = 2, 64, 1
        row = dict(asdict(case))
        start = time.perf_counter()
        try:
            with gpu.assume_gpu(a.sms, a.limits), compiling(target), tf32(DTYPES[case.dtype][1]), torch.no_grad(), \
                    target.case(strategy="gru", dtype=case.dtype, shape=dict(B=case.B, H=case.H), pick="model",
                                **{"pass": "forward"}), \
                    persistent_choice(PersistentVariant.parse(case.variant), case.block_h, case.num_warps):
                AG.gru_layer_forward(z(T, case.B, I), z(D, case.B, case.H), z(D * 3 * case.H, I),
                                     z(D, 3 * case.H, case.H), z(D * 3 * case.H), z(D, 3 * case.H),
                                     torch.full((case.B,), T), False, case.mode == "training", "persistent",
                                     case.reset_after)
        except Exception as exc:  # not planned (spills, not co-resident), not built, a compile failure
            row.update(status="not planned" if str(exc).startswith("strategy='persistent'") else "failed",
                       error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        else:
            kept = target.ptx.get("gru_fwd_persistent_kernel")
            if kept is None:
                row.update(status="failed", error="no persistent forward was compiled")
            else:
                ptx, meta, grid = kept
                compiled_row = next(r for r in target.rows if r["kernel"] == "gru_fwd_persistent_kernel")
                row.update(_model_row(ptx, meta, grid, compiled_row, case))
        row["seconds"] = round(time.perf_counter() - start, 2)
        log(_progress(row))
        out.append(row)
    return out


def _model_row(ptx: str, meta: dict, grid, compiled: dict, case: Case) -> dict:
    from bench.compile.cases import missing_switches
    from fastgru.launchers.plan import PersistentVariant

    variant = PersistentVariant.parse(case.variant)
    missing = missing_switches(variant, meta)
    step = step_path(ptx)
    passes = 3 if meta.get("DOT_PRECISION") == "tf32x3" else 1
    row = dict(status="ok" if not missing else "not built yet", registers=compiled["registers"],
               spill_bytes=compiled["spill_bytes"], shared_bytes=compiled["shared_bytes"], mma=compiled["mma"],
               grid_programs=int(grid[0]), block_hp=int(meta["BLOCK_HP"]), counts=step.path, loop_counts=step.loop_counts,
               off_path_counts=step.off_path)
    if missing:
        row["error"] = f"the launcher does not pass {', '.join(missing)}: the compile is the base kernel"
    row.update(predict(step, int(grid[0]), int(meta["BLOCK_HP"]), passes))
    return row


def _progress(row: dict) -> str:
    head = f"{row['variant']:28s} {row['dtype']:9s} {row['mode']:9s} H={row['H']:4d} B={row['B']:2d} " \
           f"bh={row['block_h']:2d} w={row['num_warps']}"
    if "us_per_step" in row:
        return f"{head} {row['status']:13s} {row['us_per_step']:6.2f} us/step ({row['seconds']} s)"
    return f"{head} {row['status']}: {row.get('error', '')[:120]} ({row['seconds']} s)"


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

_COUNT_COLS = ("ld_global", "st_global", "atomic", "mma", "mufu", "bar_sync", "total")


def markdown(rows: list, meta: dict) -> str:
    """The table: one line per case with its path counts, the prediction and its terms."""
    lines = [
        "# Per-step latency model of the persistent GRU forward (prediction, not a measurement)",
        "",
        f"Compiled for sm_{meta['arch']} on a CPU machine (Triton {meta['triton']}); {meta['seconds']:.0f} s. "
        f"Inputs: barrier floor measured ({BARRIER_FLOOR_SOURCE}: "
        + ", ".join(f"{v} us at {g}" for g, v in sorted(BARRIER_FLOOR_US.items()))
        + f"); assumed: L2 round trip {L2_ROUND_TRIP_CYCLES} cycles, mma.sync latency {MMA_SYNC_LATENCY_CYCLES} "
        f"cycles, wgmma latency {WGMMA_LATENCY_CYCLES} cycles, clock {CLOCK_GHZ} GHz, ALU {ALU_CPI} cycles, MUFU "
        f"{MUFU_CYCLES}, bar.sync {BAR_SYNC_CYCLES}. Counts: per warp, on the critical path of one step "
        "(the wait of barrier t-1 to the arrive of barrier t). Goal: "
        + " / ".join(f"{v} us" for v in GOAL_US.values()) + " at H " + " / ".join(map(str, GOAL_US)) + ".",
        "",
        "| variant | dtype | mode | H | B | BLOCK_H | warps | status | regs | spill B | programs | "
        + " | ".join(_COUNT_COLS) + " | barriers | L2 rounds | barrier us | L2 us | MMA us | ALU us | MUFU us "
        "| bar.sync us | **us/step** |",
        "|" + "---|" * (20 + len(_COUNT_COLS)),
    ]
    for r in rows:
        head = f"| {r['variant']} | {r['dtype']} | {r['mode']} | {r['H']} | {r['B']} | {r['block_h']} | {r['num_warps']} "
        if "us_per_step" not in r:
            lines.append(head + f"| {r['status']}: {r.get('error', '')[:120]} |" + " |" * (11 + len(_COUNT_COLS)))
            continue
        c = r["counts"]
        spill = f"**{r['spill_bytes']}**" if r["spill_bytes"] else "0"
        status = r["status"] if r["status"] == "ok" else f"{r['status']} ({r.get('error', '')[:80]})"
        lines.append(
            head + f"| {status} | {r['registers']} | {spill} | {r['grid_programs']} | "
            + " | ".join(str(c[k]) for k in _COUNT_COLS)
            + f" | {r['barriers']} | {r['l2_rounds']} | {r['barrier_us']} | {r['l2_us']} | {r['mma_us']} | {r['alu_us']} "
            f"| {r['mufu_us']} | {r['bar_sync_us']} | **{r['us_per_step']}** |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from bench import variants as V

    p = argparse.ArgumentParser(prog="python bench/latency_model.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for latency-model.json and latency-model.md")
    p.add_argument("--variants", default=",".join(V.VARIANTS + ("recompute",)),
                   help="comma-separated variant names (PersistentVariant.parse); default: bench/variants.py's and recompute")
    p.add_argument("--dtypes", default="bf16", help="comma-separated subset of bf16,fp32-tf32")
    p.add_argument("--H", default="256,512,1024")
    p.add_argument("--B", default="1")
    p.add_argument("--blocks", default=",".join(map(str, V.SWEEP_BLOCKS)))
    p.add_argument("--warps", default=",".join(map(str, V.SWEEP_WARPS)))
    p.add_argument("--modes", default="inference", help="comma-separated subset of inference,training (the forward)")
    p.add_argument("--arch", type=int, default=90)
    args = p.parse_args(argv)
    ints = lambda s: tuple(int(x) for x in s.split(",") if x)  # noqa: E731
    dtypes = tuple(args.dtypes.split(","))
    bad = [d for d in dtypes if d not in ("bf16", "fp32-tf32")]
    if bad:
        p.error(f"--dtypes: unknown {bad}; choose from bf16, fp32-tf32")
    modes = tuple(args.modes.split(","))
    if any(m not in MODES for m in modes):
        p.error(f"--modes: choose from {', '.join(MODES)}")
    names = tuple(v for v in args.variants.split(",") if v)
    from fastgru.launchers.plan import PersistentVariant

    for n in names:
        try:
            PersistentVariant.parse(n)
        except ValueError as exc:
            p.error(f"--variants: {exc}")
    cases = default_cases(names, dtypes, ints(args.H), ints(args.B), ints(args.blocks), ints(args.warps), modes)
    start = time.perf_counter()
    rows = compile_cases(cases, args.arch, log=lambda s: print(s, file=sys.stderr, flush=True))
    import triton

    meta = dict(arch=args.arch, triton=triton.__version__, seconds=time.perf_counter() - start,
                barrier_floor_us=BARRIER_FLOOR_US, barrier_floor_source=BARRIER_FLOOR_SOURCE,
                assumed=dict(clock_ghz=CLOCK_GHZ, l2_round_trip_cycles=L2_ROUND_TRIP_CYCLES,
                             mma_sync_latency_cycles=MMA_SYNC_LATENCY_CYCLES, wgmma_latency_cycles=WGMMA_LATENCY_CYCLES,
                             mma_sync_efficiency=MMA_SYNC_EFFICIENCY, alu_cpi=ALU_CPI, mufu_cycles=MUFU_CYCLES,
                             bar_sync_cycles=BAR_SYNC_CYCLES),
                goal_us=GOAL_US, measured_old_us=MEASURED_OLD_US, note="prediction, not a measurement")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latency-model.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "latency-model.md"), "w") as f:
        f.write(markdown(rows, meta))
    print(f"latency_model: {len(rows)} cases, {sum(r['status'] == 'ok' for r in rows)} ok, {meta['seconds']:.0f} s -> "
          f"{args.out}/latency-model.json, .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
