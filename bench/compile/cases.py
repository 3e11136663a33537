"""The shapes and dtypes the compile check runs through fastgru's own launchers (so a kernel's
argument list is built in one place, the launcher, and the plans are the dispatcher's)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fastgru import gpu
from fastgru.launchers import attention as AA
from fastgru.launchers import decoder as AD
from fastgru.launchers import gru_cell as AC
from fastgru.launchers import gru_layer as AG
from fastgru.launchers import launch as LL
from fastgru.launchers import plan as PL

from .. import variants as VARIANTS

# label -> (torch dtype, TF32 allowed). TF32 only matters for fp32: the GRU layer follows
# cudnn.allow_tf32 (3xTF32), the cell and attention follow cuda.matmul.allow_tf32.
DTYPES = {
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
    "fp32-tf32": (torch.float32, True),
    "fp32-ieee": (torch.float32, False),
    "fp64": (torch.float64, False),
}


@dataclass(frozen=True)
class Grid:
    gru: tuple  # (B, H, D) per layer shape
    gru_forced: tuple  # strategies also run forced, beside the dispatcher's own pick
    gru_reset_before: tuple  # (B, H, D) also compiled with reset_after=False (same forced strategies)
    cell: tuple  # (B, H)
    attention: tuple  # (N, Tq, T, F, D); F is A (additive) or K (dot)
    decoder: tuple = ()  # (N, T_in, H, K): the attention decoder (additive A = H; dot F = H)
    decoder_alternate: bool = False  # one score a dtype, alternating (each kernel still compiles in every dtype)
    # gru-small: hidden sizes below the MMA's minimum tile and around it, every one; the layer at
    # B = SMALL_B in both directions and the cell, the dispatcher's own picks only.
    small_h: tuple = tuple(range(1, 17))
    # The LSTM (families lstm, lstm-proj, lstm-cell): layers (B, H, D) at the dispatcher's pick and
    # with each of lstm_forced; lstm_proj (B, H, P, D) the same with proj_size P; cells (B, H).
    lstm: tuple = ()
    lstm_proj: tuple = ()
    lstm_forced: tuple = ("rows", "stepwise", "persistent")
    lstm_cell: tuple = ()
    lstm_dtypes: tuple | None = None  # the dtypes the LSTM families compile in (None: every dtype of the run)
    T: int = 2
    I: int = 64


FULL = Grid(
    gru=tuple((B, H, D) for H in (64, 256, 300, 512, 1024) for B in (1, 8, 64, 512) for D in (1, 2)),
    gru_forced=("persistent",),
    gru_reset_before=tuple((B, H, D) for H in (64, 256, 1024) for B in (1, 64) for D in (1, 2)),
    cell=tuple((B, H) for B in (1, 64, 512) for H in (256, 1024)),
    attention=tuple((32, Tq, T, A, D) for Tq in (1, 64) for T in (128, 512) for A in (64, 128) for D in (128, 256)),
    decoder=tuple((N, T_in, H, K) for N in (1, 8, 64) for T_in in (64, 512) for H in (256, 512) for K in (H, 2 * H)),
    lstm=tuple((B, H, D) for H in (256, 512, 1024) for B in (1, 16, 64) for D in (1, 2)),
    lstm_proj=tuple((B, H, H // 2, D) for H in (256, 512, 1024) for B in (1, 16, 64) for D in (1, 2)),
    lstm_forced=("persistent",),
    lstm_cell=tuple((B, H) for B in (1, 64, 512) for H in (256, 1024)),
)
# CI's form: every kernel (every strategy forced), one small shape per dtype, one config each.
QUICK = Grid(gru=((8, 64, 2),), gru_forced=("rows", "stepwise", "persistent"), gru_reset_before=((8, 64, 2),),
             cell=((8, 64),),
             attention=((2, 1, 32, 32, 32), (2, 16, 32, 32, 32)), decoder=((8, 32, 64, 64),),
             decoder_alternate=True, small_h=(), lstm=((8, 64, 2),), lstm_proj=((8, 64, 32, 2),), lstm_cell=((8, 64),),
             lstm_dtypes=("bf16",))
# The quick form compiles the LSTM's kernels in bf16 only: every LSTM kernel in all five dtypes
# took 240 s more on 2 shared cores (2026-12, Triton 3.9: fp32-ieee alone 107 s), bf16 24 s. The
# other dtypes are the full form's (the committed report), as the GRU's larger shapes are.
# (The quick form leaves gru-small out: tests/test_gru_small_hidden.py compiles it with exact
# specialization, H = 1, 16 and the rest being different binaries, and runs the picks.)


@contextmanager
def tf32(allowed: bool):
    """Set both of torch's TF32 flags for the block; restore them after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _guarded(target, name, fn, *args, **kwargs):
    """Run a launcher; an exception outside the compiles (which record their own) is a failed row."""
    try:
        return fn(*args, **kwargs)
    except _NotPlanned:
        raise
    except ValueError as exc:
        if str(exc).startswith("strategy='persistent'"):
            raise _NotPlanned(str(exc)) from exc
        target.failed(name, exc)
    except Exception as exc:
        target.failed(name, exc)
    return None


class _NotPlanned(Exception):
    """plan_gru cannot hold this shape with the forced strategy (not a compile failure)."""


def _layer_passes(target, dtype_label, shape, strategy, forward, backward):
    """One layer's forward (``forward()``, saving for backward) and backward (``backward(res)``, on
    the forward's result) under the compile target, labelled with ``shape``; a forced strategy the
    planner refuses is a note. Returns the strategies whose kernels ran in both passes."""
    pick = "dispatcher" if strategy is None else "forced"
    start = len(target.rows)
    res = None
    for pass_ in ("forward", "backward"):
        with target.case(strategy="gru", dtype=dtype_label, shape=shape, pick=pick, **{"pass": pass_}):
            try:
                if pass_ == "forward":
                    res = _guarded(target, forward.__name__, forward)
                    if res is None:
                        break
                else:
                    _guarded(target, backward.__name__, backward, res)
            except _NotPlanned as exc:
                target.notes.append(f"{dtype_label} {_fmt(shape)} {pass_}: {exc}")
                if pass_ == "forward":
                    break
    ran = [{r["strategy"] for r in target.rows[start:] if not r["probe"] and r["pass"] == p} for p in ("forward", "backward")]
    return ran[0] & ran[1]


def gru_layer(target, dtype_label, B, H, D, T, I, strategy, reset_after=True):
    """One layer's forward (save=True) and backward with ``strategy`` (None: the dispatcher's pick).
    Returns the strategies whose kernels ran in both passes."""
    dt = DTYPES[dtype_label][0]
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    x, h0, w_ih, w_hh, b_ih, b_hh = z(T, B, I), z(D, B, H), z(D * 3 * H, I), z(D, 3 * H, H), z(D * 3 * H), z(D, 3 * H)
    lengths = torch.full((B,), T, dtype=torch.int64)
    shape = dict(B=B, H=H, D=D, T=T, I=I, **({} if reset_after else {"reset_after": False}))

    def gru_layer_forward():
        return AG.gru_layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, False, True, strategy, reset_after)

    def gru_layer_backward(res):
        out, _, (hprev, gates) = res
        return AG.gru_layer_backward(torch.zeros_like(out), z(D, B, H), x, w_ih, w_hh, lengths, hprev, gates, False,
                                     strategy, reset_after)
    return _layer_passes(target, dtype_label, shape, strategy, gru_layer_forward, gru_layer_backward)


def lstm_layer(target, dtype_label, B, H, D, T, I, strategy, proj=0):
    """One LSTM layer's forward (save=True) and backward through fastgru/launchers/lstm_layer.py
    with ``strategy`` (None: the dispatcher's pick), proj_size ``proj``. Returns the strategies
    whose kernels ran in both passes."""
    from fastgru.launchers import lstm_layer as AL

    dt = DTYPES[dtype_label][0]
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    R = proj or H
    x, h0, c0 = z(T, B, I), z(D, B, R), z(D, B, H)
    w_ih, w_hh, b_ih, b_hh = z(D * 4 * H, I), z(D, 4 * H, R), z(D * 4 * H), z(D, 4 * H)
    w_hr = z(D, proj, H) if proj else None
    lengths = torch.full((B,), T, dtype=torch.int64)
    shape = dict(B=B, H=H, **({"P": proj} if proj else {}), D=D, T=T, I=I)

    def lstm_layer_forward():
        return AL.lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, False, True, strategy)

    def lstm_layer_backward(res):
        out, _, _, (hprev, gates) = res
        return AL.lstm_layer_backward(torch.zeros_like(out), z(D, B, R), z(D, B, H), x, w_ih, w_hh, w_hr, lengths,
                                      hprev, gates, False, strategy)
    return _layer_passes(target, dtype_label, shape, strategy, lstm_layer_forward, lstm_layer_backward)


def lstm_cell(target, dtype_label, B, H):
    """The fused LSTMCell step (fastgru/launchers/lstm_cell.py), forward saving, then backward."""
    from fastgru.launchers import lstm_cell as ALC

    dt = DTYPES[dtype_label][0]
    I = H
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    x, h, c, w_ih, w_hh, b = z(B, I), z(B, H), z(B, H), z(4 * H, I), z(4 * H, H), z(4 * H)
    label = dict(strategy="cell", dtype=dtype_label, shape=dict(B=B, H=H, I=I), pick="dispatcher")
    with target.case(**label, **{"pass": "forward"}):
        res = _guarded(target, "lstm_cell_forward", ALC.lstm_cell_forward, x, h, c, w_ih, w_hh, b, b, True)
    if res is None:
        return
    with target.case(**label, **{"pass": "backward"}):
        _guarded(target, "lstm_cell_backward", ALC.lstm_cell_backward, z(B, H), z(B, H), x, h, w_ih, w_hh, res[2])


def gru_cell(target, dtype_label, B, H):
    dt = DTYPES[dtype_label][0]
    I = H
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    x, h, w_ih, w_hh, b = z(B, I), z(B, H), z(3 * H, I), z(3 * H, H), z(3 * H)
    shape = dict(B=B, H=H, I=I)
    with target.case(strategy="cell", dtype=dtype_label, shape=shape, pick="dispatcher", **{"pass": "forward"}):
        res = _guarded(target, "gru_cell_forward", AC.gru_cell_forward, x, h, w_ih, w_hh, b, b, True)
    if res is None:
        return
    with target.case(strategy="cell", dtype=dtype_label, shape=shape, pick="dispatcher", **{"pass": "backward"}):
        _guarded(target, "gru_cell_backward", AC.gru_cell_backward, z(B, H), x, h, w_ih, w_hh, res[1])


def attention(target, dtype_label, score, N, Tq, T, F, D, dropout_p=0.0):
    """Forward with weights, then the backward with the weights' gradient and dq (need_dq);
    with ``dropout_p`` > 0 the kernels' dropout variant (HAS_DROPOUT), two heads."""
    dt = DTYPES[dtype_label][0]
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    heads = 2 if dropout_p else 1
    q, k, v = z(N * heads, Tq, F), z(N * heads, T, F), z(N * heads, T, D)
    w = z(heads, F) if score == "additive" else None
    lengths = torch.full((N,), T, dtype=torch.int64)
    shape = dict(N=N, Tq=Tq, T=T, **({"A": F} if score == "additive" else {"K": F}), D=D,
                 **({"heads": heads, "dropout": dropout_p} if dropout_p else {}))
    label = dict(strategy="attention", dtype=dtype_label, shape=shape, pick="dispatcher")
    seed = torch.tensor([12345], dtype=torch.int64) if dropout_p else None  # what attention_op draws on the device
    extra = (heads, dropout_p, seed)
    with target.case(**label, **{"pass": "forward"}):
        res = _guarded(target, "attention_forward", AA.attention_forward, score, q, k, w, v, lengths, None, 0.125, True,
                       *extra)
    if res is None:
        return
    out, stats, probs = res
    with target.case(**label, **{"pass": "backward"}):
        _guarded(target, "attention_backward", AA.attention_backward,
                 score, q, k, w, v, lengths, None, 0.125, stats, z(N * heads, Tq, D), probs.to(dt), True, *extra)


def decoder(target, dtype_label, score, N, T, T_in, H, K):
    """The fused decoder's forward (save, weights) and backward (with the weights' gradient; it
    also runs the attention kernels' key-side backward)."""
    dt = DTYPES[dtype_label][0]
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    F = H
    additive = score == "additive"
    gx, keys, kp, h0 = z(N, T, 3 * H), z(N, T_in, K), z(N, T_in, F), z(N, H)
    v, wq = (z(F), z(F, H)) if additive else (None, None)
    wic, whh, bhn = z(3 * H, K), z(3 * H, H), z(H)
    lengths = torch.full((N,), T_in, dtype=torch.int64)
    label = dict(strategy="gru", dtype=dtype_label, shape=dict(N=N, T=T, T_in=T_in, H=H, K=K, score=score),
                 pick="dispatcher")
    with target.case(**label, **{"pass": "forward"}):
        res = _guarded(target, "decoder_forward", AD.decoder_forward, gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths,
                       None, score, True, True)
    if res is None:
        return
    out, ctx, weights, _, (hprev, gates, q, stats) = res
    with target.case(**label, **{"pass": "backward"}):
        _guarded(target, "decoder_backward", AD.decoder_backward, z(N, T, H), z(N, T, K), weights.to(dt), z(N, H),
                 keys, kp, v, wq, wic, whh, lengths, None, ctx, hprev, gates, q, stats, score)


def _fmt(shape: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items())


# What --cases selects: GRU layers, GRU layers with reset_after=False, GRUCell, attention, the
# decoder, the small-H GRU layers and cells (gru-small), and the LSTM: layers (lstm), layers with
# proj_size = H / 2 (lstm-proj), and LSTMCell (lstm-cell). OPT_IN_FAMILIES run only when named
# (--cases persistent-variants): not part of "all", so neither the full report nor CI's quick form
# pays for them.
FAMILIES = ("gru", "gru-reset-before", "cell", "attention", "decoder", "gru-small", "lstm", "lstm-proj", "lstm-cell")
OPT_IN_FAMILIES = ("persistent-variants",)
SMALL_B = 3


def gru_small(target, dtype_label, grid: Grid):
    """gru-small: every H of ``grid.small_h`` through the dispatcher, as layer (D = 1 and 2) and
    as cell. An MMA tile below 16 is a compile error on the GPU; the plans must never produce
    one, whichever strategy they pick."""
    for H in grid.small_h:
        for D in (1, 2):
            gru_layer(target, dtype_label, SMALL_B, H, D, grid.T, grid.I, None)
        gru_cell(target, dtype_label, SMALL_B, H)


def pick_then_forced(forced, compile_layer) -> None:
    """``compile_layer(None)`` (the dispatcher's pick; it returns the strategies it ran), then
    ``compile_layer(strategy)`` for each strategy of ``forced`` the pick did not already run."""
    ran = compile_layer(None)
    for strategy in forced:
        if strategy not in ran:
            compile_layer(strategy)


def run_all(target, grid: Grid, dtypes=tuple(DTYPES), families=FAMILIES):
    """Every case of ``grid`` in every dtype, dtype by dtype (the TF32 flags set for each), for
    the case families named in ``families``."""
    for i, label in enumerate(dtypes):
        with tf32(DTYPES[label][1]), torch.no_grad():
            for reset_after, family, shapes in ((True, "gru", grid.gru), (False, "gru-reset-before", grid.gru_reset_before)):
                for B, H, D in shapes if family in families else ():
                    pick_then_forced(grid.gru_forced, lambda strategy: gru_layer(
                        target, label, B, H, D, grid.T, grid.I, strategy, reset_after))
            for B, H in grid.cell if "cell" in families else ():
                gru_cell(target, label, B, H)
            if "gru-small" in families:
                gru_small(target, label, grid)
            if grid.lstm_dtypes is None or label in grid.lstm_dtypes:
                lstm_families(target, label, grid, families)
            for score in AA.SCORES if "attention" in families else ():
                for N, Tq, T, F, D in grid.attention:
                    attention(target, label, score, N, Tq, T, F, D)
                attention(target, label, score, *grid.attention[-1], dropout_p=0.1)  # the dropout variant, once
            scores = AD.DECODER_SCORES[i % 2:][:1] if grid.decoder_alternate else AD.DECODER_SCORES
            for score in scores if "decoder" in families else ():
                for N, T_in, H, K in grid.decoder:
                    decoder(target, label, score, N, grid.T, T_in, H, K)
    if "persistent-variants" in families:
        persistent_variants(target, grid, dtypes)


def lstm_families(target, label, grid: Grid, families) -> None:
    """The LSTM's families in one dtype: each layer shape at the dispatcher's pick, then forced
    with every strategy of grid.lstm_forced that the pick did not already run (a persistent plan
    that does not fit is the planner's refusal, a note); then the cells."""
    layers = [(B, H, 0, D) for B, H, D in grid.lstm] if "lstm" in families else []
    layers += list(grid.lstm_proj) if "lstm-proj" in families else []
    for B, H, P, D in layers:
        pick_then_forced(grid.lstm_forced, lambda strategy: lstm_layer(
            target, label, B, H, D, grid.T, grid.I, strategy, P))
    for B, H in grid.lstm_cell if "lstm-cell" in families else ():
        lstm_cell(target, label, B, H)


# -- persistent-variants: the persistent kernel's step variants, each forced through the
# real launchers at every hidden block and warp count. The variant names are bench/variants.py's
# (the GPU run's list); reset_after=False and the fp32 precisions are added here.
PERSISTENT_VARIANTS = VARIANTS.VARIANTS
# reset_after=False: one barrier plus recomputation against today's two barriers.
RESET_BEFORE_VARIANTS = ("base", "recompute")
# fp32 (TF32 allowed): base and the combined variant, in each tensor-core precision.
FP32_VARIANTS = tuple(p if v == "base" else f"{v}+{p}" for v in ("base", VARIANTS.COMBINED) for p in VARIANTS.PRECISIONS)
VARIANT_DTYPES = ("bf16", "fp32-tf32")
VARIANT_H = (256, 512, 1024)
VARIANT_B = (1, 8, 64)
# fp32 only at the smaller blocks (where TF32 can compile without spills; 3xTF32 at BLOCK_H = 64 spilled in every earlier report).
VARIANT_BLOCKS = {"bf16": VARIANTS.SWEEP_BLOCKS, "fp32-tf32": (16, 32)}
VARIANT_WARPS = VARIANTS.SWEEP_WARPS


@dataclass(frozen=True)
class VariantCase:
    """One compile of the persistent-variants family: forward (save=True) and backward of one
    layer (D = 1, T = Grid.T) forced persistent with ``variant`` at hidden block ``block_h`` and
    ``num_warps`` forward warps (the backward's warps are the plan's own, 8)."""

    dtype: str
    variant: str
    H: int
    B: int
    block_h: int
    num_warps: int
    reset_after: bool = True


def variant_cases(dtypes=VARIANT_DTYPES) -> list:
    """Every case of the persistent-variants family, in run order. The cut (to keep the family
    near 10 minutes on 2 CPU cores): bf16 B = 8 and 64 only for base and the combined variant
    (B changes the batch tile and Triton's int specialization, not what a variant moves);
    reset_after=False and fp32 at B = 1 only; fp32 only reset_after=True and BLOCK_H 16/32.
    Blocks whose weight tiles exceed one block's shared memory are listed: the planner skips
    them without compiling (a note in the report)."""
    out = []
    for dtype in (d for d in VARIANT_DTYPES if d in dtypes):
        lists = ((True, PERSISTENT_VARIANTS), (False, RESET_BEFORE_VARIANTS)) if dtype == "bf16" else (
            (True, FP32_VARIANTS),)
        for reset_after, names in lists:
            full = ("base", VARIANTS.COMBINED) if dtype == "bf16" and reset_after else ()
            for H in VARIANT_H:
                for block_h in VARIANT_BLOCKS[dtype]:
                    for num_warps in VARIANT_WARPS:
                        for name in names:
                            for B in VARIANT_B if name in full else VARIANT_B[:1]:
                                out.append(VariantCase(dtype, name, H, B, block_h, num_warps, reset_after))
    return out


class _ProbeRecorder:
    """A compile target in front of the check's own: every candidate compile the planner makes
    (CompileTarget.resources) becomes a row, fitting or not, so a variant that spills or is not
    co-resident shows its registers and spills instead of only a note."""

    def __init__(self, target):
        self.target = target

    def launch(self, job):
        return self.target.launch(job)

    def resources(self, job):
        res = self.target.resources(job)
        meta, grid = next(self.target._variants(job))
        self.target._record(job, meta, self.target._compile(job, meta, grid), probe=True)
        return res


def variant_built(variant: PL.PersistentVariant, row: dict) -> str:
    """'' where the row's compile is the variant's kernel; else why not: the launcher does not
    pass a switch the variant sets (it compiled the base kernel), or the kernel refuses one (an
    unknown constexpr). 'not built yet' starts the answer in both cases."""
    if row["status"] != "ok":
        error = row.get("error") or ""
        return f"not built yet: {error.splitlines()[0][:200]}" if "unrecognised" in error else ""
    missing = missing_switches(variant, row["config"], forward=row["kernel"].startswith("gru_fwd"))
    return f"not built yet: the launcher does not pass {', '.join(missing)}" if missing else ""


def missing_switches(variant: PL.PersistentVariant, config: dict, forward: bool = True) -> list[str]:
    """The variant's constexprs (its switches that are on, its precision) a compiled launch's
    ``config`` does not carry, as "NAME=value": empty where the compile is the variant's kernel."""
    wanted = {k: v for k, v in (variant.forward_meta() if forward else variant.backward_meta()).items() if v}
    if variant.precision is not None:
        wanted["DOT_PRECISION"] = variant.precision
    return [f"{k}={v}" for k, v in wanted.items() if config.get(k) != v]


def _annotate(row: dict, case: VariantCase, variant: PL.PersistentVariant) -> None:
    """Add what the variant table shows: the variant's status, the grid's program count, how many
    programs one SM holds (plan.resident_programs: the estimate from registers, shared memory
    and threads, as the planner judges without a driver) and whether the whole grid is
    co-resident on the stand-in GPU."""
    why = variant_built(variant, row) if "persistent" in row["kernel"] else ""  # a fallback kernel has no variant
    row.update(variant=case.variant, block_h=case.block_h, warps=case.num_warps, reset_after=case.reset_after)
    if why:
        row.update(status="not built", error=why)
        return
    if row["status"] != "ok" or "persistent" not in row["kernel"]:
        return
    c = row["config"]
    programs = -(-case.H // c["BLOCK_H"]) * -(-case.B // c["BLOCK_B"])
    res = LL.Resources(row["registers"], row["shared_bytes"], c.get("num_warps", 4), spill_bytes=row["spill_bytes"])
    resident = PL.resident_programs(res, "cuda") if row["shared_bytes"] <= gpu.sm_limits("cuda")[2] else 0
    row.update(programs=programs, resident_per_sm=resident, co_resident=programs <= gpu.sm_count("cuda") * resident)


def persistent_variants(target, grid: Grid, dtypes=VARIANT_DTYPES) -> None:
    """The persistent-variants family (see variant_cases): every case forced persistent under
    plan.persistent_choice, each candidate compile recorded (_ProbeRecorder), each row annotated
    with its variant, block, warps, co-residency and whether the variant is built yet."""
    for case in variant_cases(dtypes):
        variant = PL.PersistentVariant.parse(case.variant)
        start = len(target.rows)
        with tf32(DTYPES[case.dtype][1]), torch.no_grad(), LL.compiling(_ProbeRecorder(target)):
            try:
                with PL.persistent_choice(variant, case.block_h, case.num_warps):
                    gru_layer(target, case.dtype, case.B, case.H, 1, grid.T, grid.I, "persistent", case.reset_after)
            except ValueError as exc:  # the variant refused for this call (PersistentVariant.check)
                target.notes.append(f"{case.dtype} {case.variant}: {exc}")
        for row in target.rows[start:]:
            row["pick"] = "variant"
            _annotate(row, case, variant)
