"""The shapes and dtypes the compile check runs through fastgru's own launchers (so a kernel's
argument list is built in one place, the launcher, and the plans are the dispatcher's)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fastgru.launchers import attention as AA
from fastgru.launchers import decoder as AD
from fastgru.launchers import gru_cell as AC
from fastgru.launchers import gru_layer as AG

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
    T: int = 2
    I: int = 64


FULL = Grid(
    gru=tuple((B, H, D) for H in (64, 256, 300, 512, 1024) for B in (1, 8, 64, 512) for D in (1, 2)),
    gru_forced=("persistent",),
    gru_reset_before=tuple((B, H, D) for H in (64, 256, 1024) for B in (1, 64) for D in (1, 2)),
    cell=tuple((B, H) for B in (1, 64, 512) for H in (256, 1024)),
    attention=tuple((32, Tq, T, A, D) for Tq in (1, 64) for T in (128, 512) for A in (64, 128) for D in (128, 256)),
    decoder=tuple((N, T_in, H, K) for N in (1, 8, 64) for T_in in (64, 512) for H in (256, 512) for K in (H, 2 * H)),
)
# CI's form: every kernel (every strategy forced), one small shape per dtype, one config each.
QUICK = Grid(gru=((8, 64, 2),), gru_forced=("rows", "stepwise", "persistent"), gru_reset_before=((8, 64, 2),),
             cell=((8, 64),),
             attention=((2, 1, 32, 32, 32), (2, 16, 32, 32, 32)), decoder=((8, 32, 64, 64),),
             decoder_alternate=True, small_h=())
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


def gru_layer(target, dtype_label, B, H, D, T, I, strategy, reset_after=True):
    """One layer's forward (save=True) and backward with ``strategy`` (None: the dispatcher's pick).
    Returns the strategies whose kernels ran in both passes."""
    dt = DTYPES[dtype_label][0]
    z = lambda *shape: torch.zeros(shape, dtype=dt)  # noqa: E731
    x, h0, w_ih, w_hh, b_ih, b_hh = z(T, B, I), z(D, B, H), z(D * 3 * H, I), z(D, 3 * H, H), z(D * 3 * H), z(D, 3 * H)
    lengths = torch.full((B,), T, dtype=torch.int64)
    shape = dict(B=B, H=H, D=D, T=T, I=I, **({} if reset_after else {"reset_after": False}))
    pick = "dispatcher" if strategy is None else "forced"
    start = len(target.rows)
    for pass_ in ("forward", "backward"):
        with target.case(strategy="gru", dtype=dtype_label, shape=shape, pick=pick, **{"pass": pass_}):
            try:
                if pass_ == "forward":
                    res = _guarded(target, "gru_layer_forward", AG.gru_layer_forward,
                                   x, h0, w_ih, w_hh, b_ih, b_hh, lengths, False, True, strategy, reset_after)
                    if res is None:
                        break
                    out, _, (hprev, gates) = res
                else:
                    _guarded(target, "gru_layer_backward", AG.gru_layer_backward,
                             torch.zeros_like(out), z(D, B, H), x, w_ih, w_hh, lengths, hprev, gates, False, strategy,
                             reset_after)
            except _NotPlanned as exc:
                target.notes.append(f"{dtype_label} {_fmt(shape)} {pass_}: {exc}")
                if pass_ == "forward":
                    break
    ran = [{r["strategy"] for r in target.rows[start:] if not r["probe"] and r["pass"] == p} for p in ("forward", "backward")]
    return ran[0] & ran[1]


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
# decoder, and the small-H GRU layers and cells (gru-small).
FAMILIES = ("gru", "gru-reset-before", "cell", "attention", "decoder", "gru-small")
SMALL_B = 3


def gru_small(target, dtype_label, grid: Grid):
    """gru-small: every H of ``grid.small_h`` through the dispatcher, as layer (D = 1 and 2) and
    as cell. An MMA tile below 16 is a compile error on the GPU; the plans must never produce
    one, whichever strategy they pick."""
    for H in grid.small_h:
        for D in (1, 2):
            gru_layer(target, dtype_label, SMALL_B, H, D, grid.T, grid.I, None)
        gru_cell(target, dtype_label, SMALL_B, H)


def run_all(target, grid: Grid, dtypes=tuple(DTYPES), families=FAMILIES):
    """Every case of ``grid`` in every dtype, dtype by dtype (the TF32 flags set for each), for
    the case families named in ``families``."""
    for i, label in enumerate(dtypes):
        with tf32(DTYPES[label][1]), torch.no_grad():
            for reset_after, family, shapes in ((True, "gru", grid.gru), (False, "gru-reset-before", grid.gru_reset_before)):
                for B, H, D in shapes if family in families else ():
                    ran = gru_layer(target, label, B, H, D, grid.T, grid.I, None, reset_after)
                    for strategy in grid.gru_forced:
                        if strategy not in ran:
                            gru_layer(target, label, B, H, D, grid.T, grid.I, strategy, reset_after)
            for B, H in grid.cell if "cell" in families else ():
                gru_cell(target, label, B, H)
            if "gru-small" in families:
                gru_small(target, label, grid)
            for score in AA.SCORES if "attention" in families else ():
                for N, Tq, T, F, D in grid.attention:
                    attention(target, label, score, N, Tq, T, F, D)
                attention(target, label, score, *grid.attention[-1], dropout_p=0.1)  # the dropout variant, once
            scores = AD.DECODER_SCORES[i % 2:][:1] if grid.decoder_alternate else AD.DECODER_SCORES
            for score in scores if "decoder" in families else ():
                for N, T_in, H, K in grid.decoder:
                    decoder(target, label, score, N, grid.T, T_in, H, K)
