"""The benchmark suites: which ops, shapes, dtypes, modes and providers each one runs, and the
setup that builds a case's providers. A case and the quick GRU cases come from fastgru.bench.cases.

Providers beyond the GRU ones (fastgru, nn.GRU, compiled_ref):
  nn.GRUCell    the cell suite's baseline (cell_providers.py)
  nn.LSTM       the lstm suite's baseline (fastgru/bench/lstm_providers.py; cuDNN on CUDA)
  naive_ref     the reference attention in plain PyTorch (materializes the score tensors)
  sdpa          torch.nn.functional.scaled_dot_product_attention (dot attention only; around the
                same projections for multi-head dot attention)
  nn.MultiheadAttention   torch's module (multi-head dot attention only)
  eager_ref     (decoder suite) the tutorial-style attention decoder of decoder_providers.py run
                eagerly (in the GRU suite: the reference loop of a reset_after=False layer)
  compiled_ref  (decoder suite) the same decoder under torch.compile (in the GRU suite and the cell
                suite: torch.compile of fastgru.reference)
"""

from __future__ import annotations

import itertools

from fastgru.bench.cases import (CUDNN_PERSISTENT, DTYPES, MODES, QUICK_COMPILE_SKIP, Case, compile_split,
                                  default_dtypes, gru_case, gru_shape, lstm_case, lstm_shape, quick_gru_cases,
                                  quick_lstm_cases)
from fastgru.bench.gru_providers import gru_setup
from fastgru.bench.lstm_providers import lstm_setup

from bench.attention_providers import attention_setup
from bench.cell_providers import cell_setup
from bench.decoder_providers import decoder_setup

SUITES = ("gru", "lstm", "cell", "attention", "decoder")
SETUPS = {"gru": gru_setup, "lstm": lstm_setup, "cell": cell_setup, "attention": attention_setup,
          "decoder": decoder_setup}

BATCHES = (1, 8, 32, 128, 512)
HIDDENS = (128, 256, 512, 1024)
SEQ_LENS = (64, 512)
CELL_BATCHES = (1, 8, 64, 256)
ATTN_N = (8, 32)
ATTN_T = (128, 512, 2048)
ATTN_DIM = 256  # query, key and value width
ATTN_SIZE = 128  # attention_size of the pooling and additive scorers
# Multi-head and multi-hop attention: one batch and length, the shapes of the issue.
MULTI_N, MULTI_T = 32, 512
MULTIHEAD_DOT = ((512, 8), (256, 4))  # (embed dim, heads) of the "projected" dot attention
ADDITIVE_HEADS = 4  # splitting ATTN_SIZE and ATTN_DIM
HOPS = (4, 8)  # multi-hop pooling (Lin et al. 2017)
HOP_T = (512, 2048)
MHA_PROVIDERS = ("fastgru", "naive_ref", "nn.MultiheadAttention", "sdpa")
# The attention GRU decoder (additive attention, Bahdanau): a teacher-forced training step over
# DEC_T_OUT target positions and one decoding step, vs the tutorial-style decoder eager and compiled.
# Keys are a bidirectional encoder's outputs, K = 2H (Bahdanau et al. 2015); input (embedding)
# size I = H and attention size A = H, as in the PyTorch seq2seq tutorial.
DEC_BATCHES = (1, 8, 64)
DEC_T_IN = (64, 512)
DEC_HIDDENS = (256, 512)
DEC_T_OUT = 32
DEC_KEY_FACTOR = 2
DEC_PROVIDERS = ("fastgru", "eager_ref", "compiled_ref")
# torch.compile unrolls the Tout-step loop of the training step, forward and backward (on 2 CPU
# cores, cold: 40 s at Tout = 5 and tiny sizes; it grows with Tout), so that compiles only at two
# corners (B, H, Tin); one step compiles in seconds (8 s on CPU at B=1, H=256), so the decoding
# step compiles at every shape. Compile-only parts run last (compile_split).
DEC_COMPILE_POINTS = {(8, 256, 64), (64, 512, 512)}
DEC_QUICK = {"B": 8, "Tin": 64, "H": 64, "Tout": 16}  # --quick: one case of each op, seconds on a CPU

# torch.compile unrolls the reference's time loop, so compiling costs seconds to minutes per
# shape. It runs only at T=64 and on a few (batch, hidden) points, enough to place it.
COMPILE_T = 64
COMPILE_POINTS = {(8, 256), (128, 256), (8, 1024), (128, 1024)}
CELL_COMPILE_POINTS = {(1, 256), (64, 256), (1, 1024), (64, 1024)}


def _gru_compiles(shape):
    if shape["packed"]:
        return False, "not run on packed input"
    if shape["T"] != COMPILE_T or (shape["B"], shape["H"]) not in COMPILE_POINTS or shape["layers"] != 1:
        return False, f"compile only at T={COMPILE_T}, (B, H) in {sorted(COMPILE_POINTS)} (compile time)"
    return True, ""


def _ordered(splits):
    """Main cases first, then the compile-only ones (see fastgru.bench.cases.compile_split)."""
    first, last = [], []
    for split in splits:
        first.append(split[0])
        last += split[1:]
    return first + last


def gru_cases(quick=False, dtypes=("fp32", "bf16")):
    if quick:
        return quick_gru_cases(dtypes)
    grid = [gru_shape(B, H, T) for T, H, B in itertools.product(SEQ_LENS, HIDDENS, BATCHES)]
    grid += [gru_shape(B, H, 512, packed=True) for H in (256, 1024) for B in (32, 128)]
    grid += [gru_shape(B, H, 512, layers=2, bidirectional=True) for H in (256, 512) for B in (8, 64)]
    # The original formulation (reset before the recurrent matmul; no cuDNN equivalent): against
    # the same math in PyTorch, and beside the reset_after=True rows of the same shapes (the cost
    # of the second phase per step: a second grid barrier in the persistent strategy).
    grid += [gru_shape(B, H, T, reset_after=False) for T in SEQ_LENS for H in (256, 512, 1024) for B in (1, 8, 64)]
    return _ordered(compile_split(gru_case(m, d, s), *_gru_compiles(s)) for d in dtypes for m in MODES for s in grid)


# The LSTM suite (fastgru.LSTM vs nn.LSTM, eager and graphed). First the shapes where PyTorch gives
# cuDNN's persistent LSTM (bench/lstm_cudnn.py): fp16 (the only dtype it takes), one layer, one
# direction, I = H, H and B from the lists below, T = 512; they run whenever a 16-bit dtype does
# (the default on CUDA), the headline shape (CUDNN_PERSISTENT) first. Then the general grid in
# the run's dtypes, projections (proj_size, cuDNN's STANDARD algorithm), a bidirectional stack and
# packed input.
LSTM_PERSIST_H = (768, 256, 512, 1024)
LSTM_PERSIST_B = (16, 8, 64, 128)
LSTM_T = 512
LSTM_HIDDENS = (256, 512, 1024)
LSTM_BATCHES = (1, 8, 64)
LSTM_PROJ = ((512, 128), (1024, 256))  # (H, proj_size)


def lstm_cases(quick=False, dtypes=("fp32", "bf16")):
    if quick:
        return quick_lstm_cases(dtypes)
    persist = []
    if set(dtypes) & {"bf16", "fp16"}:
        head = lstm_shape(*CUDNN_PERSISTENT)
        persist = [head] + [s for H in LSTM_PERSIST_H for B in LSTM_PERSIST_B
                            if (s := lstm_shape(B, H, LSTM_T)) != head]
    grid = [lstm_shape(B, H, LSTM_T) for H in LSTM_HIDDENS for B in LSTM_BATCHES]
    grid += [lstm_shape(B, H, LSTM_T, proj=P) for H, P in LSTM_PROJ for B in (8, 64)]
    grid += [lstm_shape(B, H, LSTM_T, layers=2, bidirectional=True) for H in (256, 512) for B in (8, 64)]
    grid += [lstm_shape(64, 512, LSTM_T, packed=True)]
    cases = [lstm_case(m, "fp16", s) for s in persist for m in MODES]
    cases += [lstm_case(m, d, s) for d in dtypes for m in MODES for s in grid]
    seen = set()  # a grid shape already among the persistent ones (in fp16) runs once
    return [c for c in cases if not (c.id in seen or seen.add(c.id))]


def cell_cases(quick=False, dtypes=("fp32", "bf16")):
    batches, hiddens = ((1, 64), (128,)) if quick else (CELL_BATCHES, HIDDENS)
    splits = []
    for d, H, B in itertools.product(dtypes, hiddens, batches):
        case = Case("cell", "gru_cell", "inference", d, {"B": B, "I": H, "H": H},
                    ("fastgru", "nn.GRUCell", "compiled_ref"), ("nn.GRUCell", "compiled_ref"))
        if quick:
            splits.append(compile_split(case, False, "skipped in --quick (compile time)"))
        else:
            compiles = (B, H) in CELL_COMPILE_POINTS
            splits.append(compile_split(case, compiles, f"compile only at (B, H) in {sorted(CELL_COMPILE_POINTS)}"))
    return _ordered(splits)


def attention_cases(quick=False, dtypes=("fp32", "bf16")):
    ns, ts = ((8,), (128,)) if quick else (ATTN_N, ATTN_T)
    modes = ("inference",) if quick else MODES
    cases = []
    for d, mode, N, T in itertools.product(dtypes, modes, ns, ts):
        shape = {"N": N, "T": T, "D": ATTN_DIM, "A": ATTN_SIZE}
        cases.append(Case("attention", "attention_pooling", mode, d, shape, ("fastgru", "naive_ref"), ("naive_ref",)))
        for Tq in (1, T):
            shape = {"N": N, "Tq": Tq, "T": T, "D": ATTN_DIM, "A": ATTN_SIZE}
            cases.append(
                Case("attention", "additive_attention", mode, d, shape, ("fastgru", "naive_ref"), ("naive_ref",))
            )
            shape = {"N": N, "Tq": Tq, "T": T, "D": ATTN_DIM}
            cases.append(
                Case("attention", "dot_attention", mode, d, shape, ("fastgru", "naive_ref", "sdpa"),
                     ("naive_ref", "sdpa"))
            )
    for d, mode in itertools.product(dtypes, modes):
        cases += _multi_cases(mode, d, quick)
    return cases


def _multi_cases(mode, dtype, quick=False):
    """Multi-head dot ("projected", as nn.MultiheadAttention) and additive attention, and
    multi-hop pooling; --quick: one small case of each (N=8, T=128, 4 heads or hops)."""
    def case(op, shape, providers=("fastgru", "naive_ref")):
        return Case("attention", op, mode, dtype, shape, providers, providers[1:])
    N, T = (8, 128) if quick else (MULTI_N, MULTI_T)
    dot = ((ATTN_DIM, 4),) if quick else MULTIHEAD_DOT
    cases = [case("multihead_dot_attention", {"N": N, "Tq": T, "T": T, "D": E, "heads": H}, MHA_PROVIDERS)
             for E, H in dot]
    for Tq in ((T,) if quick else (1, T)):
        shape = {"N": N, "Tq": Tq, "T": T, "D": ATTN_DIM, "A": ATTN_SIZE, "heads": ADDITIVE_HEADS}
        cases.append(case("multihead_additive_attention", shape))
    for hop_T, r in itertools.product((T,) if quick else HOP_T, HOPS[:1] if quick else HOPS):
        cases.append(case("multihop_pooling", {"N": N, "T": hop_T, "D": ATTN_DIM, "A": ATTN_SIZE, "hops": r}))
    return cases


def decoder_shape(B, H, Tin, Tout=None) -> dict:
    """A decoder case's shape: I = A = H, K = DEC_KEY_FACTOR * H; ``Tout`` only for the
    teacher-forced training step (the decoding step is one token)."""
    shape = {"B": B} if Tout is None else {"B": B, "Tout": Tout}
    return dict(shape, Tin=Tin, I=H, H=H, K=DEC_KEY_FACTOR * H, A=H)


def decoder_cases(quick=False, dtypes=("fp32", "bf16")):
    ops = (("attention_decoder", "training"), ("attention_decoder_step", "inference"))
    if quick:
        q = DEC_QUICK
        shapes = {"training": decoder_shape(q["B"], q["H"], q["Tin"], q["Tout"]),
                  "inference": decoder_shape(q["B"], q["H"], q["Tin"])}
        cases = [Case("decoder", op, mode, d, shapes[mode], DEC_PROVIDERS, DEC_PROVIDERS[1:])
                 for d in dtypes for op, mode in ops]
        return [compile_split(c, False, QUICK_COMPILE_SKIP)[0] for c in cases]
    splits = []
    for d, (op, mode), Tin, H, B in itertools.product(dtypes, ops, DEC_T_IN, DEC_HIDDENS, DEC_BATCHES):
        training = mode == "training"
        case = Case("decoder", op, mode, d, decoder_shape(B, H, Tin, DEC_T_OUT if training else None), DEC_PROVIDERS,
                    DEC_PROVIDERS[1:])
        if training:
            compiles = (B, H, Tin) in DEC_COMPILE_POINTS
            splits.append(compile_split(case, compiles, f"compile only at (B, H, Tin) in {sorted(DEC_COMPILE_POINTS)} "
                                                        f"(compile time of the unrolled loop)"))
        else:
            splits.append(compile_split(case, True, ""))
    return _ordered(splits)


def select(suite="all", quick=False, dtypes=None, device="cpu"):
    """The cases of one suite (or all), in run order. bf16 runs by default only on CUDA."""
    if dtypes is None:
        dtypes = default_dtypes(device)
    unknown = set(dtypes) - set(DTYPES)
    if unknown:
        raise ValueError(f"unknown dtype(s) {sorted(unknown)}; choose from {sorted(DTYPES)}")
    suites = SUITES if suite == "all" else (suite,)
    makers = {"gru": gru_cases, "lstm": lstm_cases, "cell": cell_cases, "attention": attention_cases, "decoder": decoder_cases}
    cases = []
    for s in suites:
        if s not in makers:
            raise ValueError(f"unknown suite {s!r}; choose from {SUITES + ('all',)}")
        cases += makers[s](quick=quick, dtypes=tuple(dtypes))
    return cases
