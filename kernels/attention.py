"""Fused attention for two scores, one set of kernels: a masked softmax over the keys and the
weighted sum of the values, forward and a flash-style backward that recomputes the scores.

The constexpr ``SCORE`` picks the score and its gradient, nothing else differs:
  "additive" (Bahdanau)  s_ij = w . tanh(q_i + k_j), q and k the projected queries and keys
                         (attention pooling passes a zero q, one query row); ``scale`` is 1
  "dot" (Luong)          s_ij = scale * q_i . k_j; ``w`` is None
q (N, Tq, F), k (N, T, F), values (N, T, D); F is the score's feature size (the attention size
A, or the key size K), chunked by BLOCK_F. Memory stays O(N Tq (F + D)): the additive
(Tq, T, F) tanh tensor only ever exists as one [BQ, BT, BF] register tile.

Saved for backward: each query row's score maximum m and softmax denominator l (``stats``
[B, 2, Tq]; m = 0, l = 1 for a fully masked row, whose scores are all -inf, so every recomputed
probability of it is 0). Probabilities are recomputed as exp(s - m) / l, the very formula of
the forward and of PyTorch's softmax: a single log-sum-exp would carry its own rounding,
eps * |m + log l|, into every probability, and ds = p (dp - delta) amplifies that wherever one
key dominates a row. The backward runs two kernels, one per query block (delta, dq), then
one per key block (dk, dvalues, and the additive score vector's per-key share dw_part),
instead of one with atomics. Each gradient is accumulated in
registers over the other axis's blocks and stored once, by the one program that owns its rows
and its block of columns (BLOCK_F feature columns, BLOCK_D value columns; a third grid axis
runs over column blocks when a gradient is wider than one block, recomputing the
probabilities per block): deterministic, no read-modify-write, and the kernels may be
autotuned.

Heads and dropout: the batch axis B = N * HEADS holds row n * HEADS + h for head h of batch
row n; lengths and the key padding mask are per batch row (index b // HEADS), the additive
score vector per head (row b % HEADS of ``w``). Dropout on the attention weights (p_drop > 0)
draws one Philox number per weight from the seed and the weight's flat index, so the backward
regenerates the forward's mask instead of storing it. ``seed`` points to one int64 on the device
(None without dropout), read once per program: the caller draws it per call with torch's
generator on the device, so a CUDA graph's replays each draw a new mask from unchanged launch
arguments, and no host value is read.

Conventions: ``o_`` offsets, ``m_`` masks, ``b_`` register blocks, ``s_`` strides, ``p_``
pointers; shapes in comments as ``# [BQ, BT]``. Every loaded value is converted to the compute
dtype ``CDT`` (float32 for bf16/fp16 and TF32 inputs; float64 for fp32 and fp64 inputs, see
the launcher) before arithmetic, except the operands of ``tl.dot`` on a GPU, which stay in
``DOT_DT`` (the input dtype: bf16/fp16 tensor-core dots with fp32 accumulation). Under the
interpreter ``DOT_DT`` is ``CDT`` as well, because bf16 arithmetic is wrong there. Launch
configurations: attention_configs.py.
"""

import triton
import triton.language as tl

from .activations import tanh, tanh_and_grad
from .attention_configs import every_config, prune

# The autotune key: the score and the shape's bucket (powers of two, attention_configs.bucket).
_BUCKET = ["KEY_TQ", "KEY_T", "KEY_F", "KEY_D"]
_KEY = ["SCORE", *_BUCKET]
_RUNTIME = ["HEADS", "p_drop", "seed", *_BUCKET]  # never specialized on (seed: a pointer, its alignment)

_HEURISTICS = {
    "HAS_LENGTHS": lambda a: a["lengths"] is not None,
    "HAS_MASK": lambda a: a["mask"] is not None,
    "HAS_DROPOUT": lambda a: a["p_drop"] > 0.0,
    # tl.dot wherever two blocks meet in a product: the additive BLOCK_F never does.
    "USE_DOT": lambda a: min(a["BLOCK_Q"], a["BLOCK_T"], a["BLOCK_D"], a["BLOCK_F"] if a["SCORE"] == "dot" else 16) >= 16,
}
_BWD_HEURISTICS = {**_HEURISTICS, "HAS_DPROB": lambda a: a["dprob"] is not None}


# ------------------------------------------------------------------------------ shared steps


@triton.jit
def mm(a, b, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr):
    """a [M, K] @ b [K, N] -> [M, N] in CDT. tl.dot (tensor cores) when every tile side is
    >= 16, else a broadcast multiply-sum over K (for the small query blocks of attention
    pooling), written b-first: Triton's combine pass rewrites sum(a[:, :, None] * b[None, :, :],
    1) with M, N >= 16 into a tl.dot of any K, which Triton 3.6 compiles to a TF32 mma.sync
    m16n8k8 that fills its 8 K slots with copies of a K < 8 operand (p_v^T dO at BLOCK_Q < 8:
    wrong dvalues); the b-first product never matches that pattern (FMA only, checked on sm_90
    with Triton 3.6 and 3.9, tests/test_attention_small_blocks.py)."""
    if USE_DOT:
        return tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PRECISION, out_dtype=CDT)
    else:
        return tl.sum(b.to(CDT)[None, :, :] * a.to(CDT)[:, :, None], axis=1)


@triton.jit
def row_dots(a, o_a, m_a, s_ar, s_ac, b, o_b, m_b, s_br, s_bc, N,
             USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr):
    """[BA, BB] = a[o_a, :N] @ b[o_b, :N]^T in CDT (rows and columns at strides s_*r, s_*c;
    masked rows count as zero), BLOCK_N columns at a time: dot scores q k^T and dp = dO v^T."""
    acc = tl.zeros([BLOCK_A, BLOCK_B], CDT)
    for n0 in range(0, N, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)
        m_n = o_n < N
        b_a = tl.load(a + o_a[:, None] * s_ar + o_n[None, :] * s_ac, mask=m_a[:, None] & m_n[None, :], other=0.0)
        b_b = tl.load(b + o_b[:, None] * s_br + o_n[None, :] * s_bc, mask=m_b[:, None] & m_n[None, :], other=0.0)
        acc += mm(b_a, tl.trans(b_b), USE_DOT, CDT, DOT_DT, PRECISION)
    return acc


@triton.jit
def _key_range(lengths, i_n, T, HAS_LENGTHS: tl.constexpr, CLIP: tl.constexpr):
    """(valid keys of row i_n, the end of the key loop): lengths[i_n] (or T), and that length
    clipped to T when CLIP, T otherwise."""
    n_valid, hi = T, T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
        if CLIP:
            hi = tl.minimum(n_valid, T)
    return n_valid, hi


@triton.jit
def key_valid(o_t, T, n_valid, mask, mask_row, s_mt, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr):
    """[BT] bool: key t takes part (t < T, t < lengths[n], key_padding_mask[n, t] false).
    ``mask`` may be None (HAS_MASK false), so the row offset is added here, under the flag."""
    m_t = o_t < T
    if HAS_LENGTHS:
        m_t = m_t & (o_t < n_valid)
    if HAS_MASK:
        ignore = tl.load(mask + mask_row + o_t * s_mt, mask=o_t < T, other=1)
        m_t = m_t & (ignore == 0)
    return m_t


@triton.jit
def load_seed(seed, HAS_DROPOUT: tl.constexpr):
    """The dropout seed, an int64 scalar read from the pointer ``seed`` (0 without dropout)."""
    if HAS_DROPOUT:
        return tl.load(seed)
    else:
        return 0


@triton.jit
def dropout_keep(seed, i_n, o_q, o_t, Tq, T, p_drop):
    """[BQ, BT] bool: weight (i_n, o_q, o_t) survives dropout. One Philox number per weight,
    counted by its flat index in (N, Tq, T), so the backward regenerates the forward's mask.
    ``seed``: the scalar load_seed read."""
    offsets = (i_n * Tq + o_q)[:, None] * T + o_t[None, :]
    return tl.rand(seed, offsets) >= p_drop


@triton.jit
def dprobs(s, b_m, b_l, i_n, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, Tq, D, T, p_drop, seed, s_dq, s_dd, s_vt, s_vd,
           HAS_DPROB: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr,
           DOT_DT: tl.constexpr, PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr,
           BLOCK_D: tl.constexpr):
    """From masked scores [BQ, BT]: p = exp(s - m) / l, the weights that reach the values (p after
    dropout: kept ones scaled by 1 / (1 - p_drop), the rest 0), and dp = d loss / d p: the
    gradient of those weights, dO . v_j + dprob_ij, through the dropout mask (0 where masked).
    Query rows past Tq (m_q false) get p = 0: their stats load as m = 0, l = 1, so exp(s) there
    would be unnormalised (a zero query's additive score w . tanh(k_j) is not 0) and overflow
    for large s, and inf * 0 (their zero dO) is NaN in dvalues and dk. Their dO and dprob load
    as 0, so dp is 0 there too, and with p, so are p_v and ds."""
    p = tl.exp(tl.where(m_q[:, None], s - b_m[:, None], float("-inf"))) / b_l[:, None]
    dp = row_dots(do, o_q, m_q, s_dq, s_dd, val, o_t, m_t, s_vt, s_vd, D,
                  USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
    if HAS_DPROB:
        dp += tl.load(dprob + dprob_row + o_q[:, None] * T + o_t[None, :], mask=m_q[:, None] & m_t[None, :], other=0.0).to(CDT)
    p_v = p
    if HAS_DROPOUT:
        keep = dropout_keep(seed, i_n, o_q, o_t, Tq, T, p_drop)
        p_v = tl.where(keep, p / (1.0 - p_drop), 0.0)
        dp = tl.where(keep, dp / (1.0 - p_drop), 0.0)
    return p, p_v, dp


# ------------------------------------------------------------------------------ the scores


@triton.jit
def _tanh_tile(q, k, w, o_q, o_t, m_q, m_t, f0, F, s_qt, s_qf, s_kt, s_kf, s_w,
               BLOCK_F: tl.constexpr, CDT: tl.constexpr):
    """Features [f0, f0 + BF): offsets, mask, w there, and tanh(q_if + k_jf) [BQ, BT, BF]."""
    o_f = f0 + tl.arange(0, BLOCK_F)
    m_f = o_f < F
    b_q = tl.load(q + o_q[:, None] * s_qt + o_f[None, :] * s_qf, mask=m_q[:, None] & m_f[None, :], other=0.0)
    b_k = tl.load(k + o_t[:, None] * s_kt + o_f[None, :] * s_kf, mask=m_t[:, None] & m_f[None, :], other=0.0)
    b_w = tl.load(w + o_f * s_w, mask=m_f, other=0.0).to(CDT)
    return o_f, m_f, b_w, tanh(b_q.to(CDT)[:, None, :] + b_k.to(CDT)[None, :, :], True)  # FAST: CDT fp32 is bf16/TF32


@triton.jit
def _additive_scores(q, k, w, o_q, o_t, m_q, m_t, F, s_qt, s_qf, s_kt, s_kf, s_w,
                     CDT: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    """[BQ, BT] scores w . tanh(q_i + k_j), summed over F in chunks of BLOCK_F."""
    s = tl.zeros([BLOCK_Q, BLOCK_T], dtype=CDT)
    for f0 in range(0, F, BLOCK_F):
        o_f, m_f, b_w, b_t = _tanh_tile(q, k, w, o_q, o_t, m_q, m_t, f0, F, s_qt, s_qf, s_kt, s_kf, s_w, BLOCK_F, CDT)
        s += tl.sum(b_t * b_w[None, None, :], axis=2)
    return s


@triton.jit
def _dot_scores(q, k, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf,
                USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
                BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    """[BQ, BT] scores scale * q_i . k_j."""
    s = row_dots(q, o_q, m_q, s_qt, s_qf, k, o_t, m_t, s_kt, s_kf, F, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
    return s * scale


@triton.jit
def _scores(q, k, w, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf, s_w,
            SCORE: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
            PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    """[BQ, BT] scores of SCORE, -inf where the key is masked (m_t false)."""
    if SCORE == "additive":
        s = _additive_scores(q, k, w, o_q, o_t, m_q, m_t, F, s_qt, s_qf, s_kt, s_kf, s_w, CDT, BLOCK_Q, BLOCK_T, BLOCK_F)
    else:
        s = _dot_scores(q, k, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf,
                        USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
    return tl.where(m_t[None, :], s, float("-inf"))


@triton.jit
def _key_block(q, k, w, mask, o_q, m_q, t0, T, n_valid, F, scale, mask_row, s_mt, s_qt, s_qf, s_kt, s_kf, s_w,
               SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr,
               CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    """Key block from t0: offsets [BT], valid keys [BT] and scores [BQ, BT], -inf where masked."""
    o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
    m_t = key_valid(o_t, T, n_valid, mask, mask_row, s_mt, HAS_LENGTHS, HAS_MASK)
    s = _scores(q, k, w, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf, s_w,
                SCORE, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
    return o_t, m_t, s


@triton.jit
def _key_probs(q, k, w, val, mask, do, dprob, i_n, o_q, m_q, b_m, b_l, t0, Tq, T, n_valid, F, D, scale, p_drop, seed,
               mask_row, dprob_row, s_mt, s_qt, s_qf, s_kt, s_kf, s_w, s_vt, s_vd, s_dq, s_dd,
               SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DPROB: tl.constexpr,
               HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
               PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr,
               BLOCK_D: tl.constexpr):
    """Key block from t0 for the query rows o_q: offsets [BT], valid keys [BT], and the
    recomputed p, p_v and dp [BQ, BT] (dprobs)."""
    o_t, m_t, s = _key_block(q, k, w, mask, o_q, m_q, t0, T, n_valid, F, scale, mask_row, s_mt, s_qt, s_qf, s_kt, s_kf,
                             s_w, SCORE, HAS_LENGTHS, HAS_MASK, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
    p, p_v, dp = dprobs(s, b_m, b_l, i_n, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, Tq, D, T, p_drop, seed,
                        s_dq, s_dd, s_vt, s_vd, HAS_DPROB, HAS_DROPOUT, USE_DOT, CDT, DOT_DT, PRECISION,
                        BLOCK_Q, BLOCK_T, BLOCK_D)
    return o_t, m_t, p, p_v, dp


# ------------------------------------------------------------------------------ score gradients


@triton.jit
def _dscores(p, dp, b_delta, scale, SCORE: tl.constexpr):
    """ds = d loss / d s = p (dp - delta_i) [BQ, BT]; the dot score's carries its scale."""
    ds = p * (dp - b_delta[:, None])
    if SCORE == "dot":
        ds = ds * scale
    return ds


@triton.jit
def _score_grad(ds, q, k, w, o_q, o_t, m_q, m_t, o_c, m_c, s_qt, s_qf, s_kt, s_kf, s_w,
                AXIS: tl.constexpr, SCORE: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr,
                DOT_DT: tl.constexpr, PRECISION: tl.constexpr):
    """What ds [BQ, BT] adds to the feature columns o_c of a score input's gradient, summed
    over AXIS: AXIS 1 gives dq rows o_q [BQ, BF], AXIS 0 dk rows o_t [BT, BF]. Also, for the
    additive score, the share of the score vector's gradient (sum ds tanh, same shape; zeros
    for dot). Additive: through the tanh tile at those columns; dot: ds @ k or ds^T @ q."""
    if SCORE == "additive":
        b_q = tl.load(q + o_q[:, None] * s_qt + o_c[None, :] * s_qf, mask=m_q[:, None] & m_c[None, :], other=0.0)
        b_k = tl.load(k + o_t[:, None] * s_kt + o_c[None, :] * s_kf, mask=m_t[:, None] & m_c[None, :], other=0.0)
        b_w = tl.load(w + o_c * s_w, mask=m_c, other=0.0).to(CDT)
        b_t, b_g = tanh_and_grad(b_q.to(CDT)[:, None, :] + b_k.to(CDT)[None, :, :], True)  # [BQ, BT, BF] each
        g = tl.sum(ds[:, :, None] * b_g, axis=AXIS) * b_w[None, :]
        return g, tl.sum(ds[:, :, None] * b_t, axis=AXIS)
    else:
        if AXIS == 1:
            b_k = tl.load(k + o_t[:, None] * s_kt + o_c[None, :] * s_kf, mask=m_t[:, None] & m_c[None, :], other=0.0)
            g = mm(ds, b_k, USE_DOT, CDT, DOT_DT, PRECISION)
        else:
            b_q = tl.load(q + o_q[:, None] * s_qt + o_c[None, :] * s_qf, mask=m_q[:, None] & m_c[None, :], other=0.0)
            g = mm(tl.trans(ds), b_q, USE_DOT, CDT, DOT_DT, PRECISION)
        return g, g * 0.0


# ------------------------------------------------------------------------------ the kernels


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=_RUNTIME)
def attention_fwd(
    q, k, w, val, lengths, mask, out, stats, scores,  # pointers; stats [B, 2, Tq], scores [B, Tq, T] contiguous
    Tq, T, F, D, scale, HEADS, p_drop, seed, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_wh, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_on, s_ot, s_od,
    SCORE: tl.constexpr, NEED_WEIGHTS: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
):
    """Grid (B, cdiv(Tq, BQ), cdiv(D, BD)), B = N * HEADS. Online softmax over key blocks;
    programs on other value-column blocks recompute the same scores, only column block 0
    writes stats/scores. With dropout the stored scores are -inf where a weight is dropped (the
    launcher's exp(s - m) / l / (1 - p_drop) then gives the weights after dropout)."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q, i_d = tl.program_id(1), tl.program_id(2)
    q, k, val, out, stats = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, out + i_n * s_on, stats + i_n * 2 * Tq
    if w is not None:
        w = w + (i_n % HEADS) * s_wh
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    m_q, m_d = o_q < Tq, o_d < D
    tq_w = tl.where(i_d == 0, Tq, 0)  # rows whose stats/scores this program writes: value block 0 only
    i_b = i_n // HEADS  # the batch row: its lengths and mask
    seed = load_seed(seed, HAS_DROPOUT)
    n_valid, hi = _key_range(lengths, i_b, T, HAS_LENGTHS, not NEED_WEIGHTS)  # weights: all T (-inf past the length)
    m_i = tl.full([BLOCK_Q], float("-inf"), CDT)
    l_i = tl.zeros([BLOCK_Q], CDT)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t, m_t, s = _key_block(q, k, w, mask, o_q, m_q, t0, T, n_valid, F, scale, i_b * s_mn, s_mt,
                                 s_qt, s_qf, s_kt, s_kf, s_w, SCORE, HAS_LENGTHS, HAS_MASK,
                                 USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)  # [BQ, BT]
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no (-inf) - (-inf) in a masked row
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if HAS_DROPOUT:
            keep = dropout_keep(seed, i_n, o_q, o_t, Tq, T, p_drop)
            p = tl.where(keep, p / (1.0 - p_drop), 0.0)
            s = tl.where(keep, s, float("-inf"))
        if NEED_WEIGHTS:
            m_s = (o_q < tq_w)[:, None] & (o_t < T)[None, :]
            tl.store(scores + i_n * Tq * T + o_q[:, None] * T + o_t[None, :], s, mask=m_s)
        b_v = tl.load(val + o_t[:, None] * s_vt + o_d[None, :] * s_vd, mask=m_t[:, None] & m_d[None, :], other=0.0)
        acc = acc * alpha[:, None] + mm(p, b_v, USE_DOT, CDT, DOT_DT, PRECISION)
        m_i = m_new
    empty = l_i == 0.0  # fully masked row: zero context, m = 0 and l = 1
    l_i = tl.where(empty, 1.0, l_i)
    acc = acc / l_i[:, None]
    tl.store(out + o_q[:, None] * s_ot + o_d[None, :] * s_od, acc.to(out.dtype.element_ty), mask=m_q[:, None] & m_d[None, :])
    tl.store(stats + o_q, tl.where(empty, 0.0, m_i), mask=o_q < tq_w)
    tl.store(stats + Tq + o_q, l_i, mask=o_q < tq_w)


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_RUNTIME)
def attention_bwd_dq(
    q, k, w, val, lengths, mask, do, stats, delta, dprob, dq,  # delta [B, Tq] and dq [B, Tq, F] written, CDT
    Tq, T, F, D, scale, HEADS, p_drop, seed, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_wh, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    SCORE: tl.constexpr, NEED_DQ: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
    HAS_DPROB: tl.constexpr,
):
    """Grid (B, cdiv(Tq, BQ), cdiv(F, BF) with NEED_DQ, else 1): delta_i = sum_j p_ij dp_ij
    (always; the key-block kernel, run after this one, reads it) and, when NEED_DQ, the
    columns [i_c BF, (i_c + 1) BF) of dq_i = sum_j ds_ij (d s_ij / d q_i), accumulated in
    registers. Programs on other column blocks recompute the same delta; block 0 writes it."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q, i_c = tl.program_id(1), tl.program_id(2)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    stats, delta, dq = stats + i_n * 2 * Tq, delta + i_n * Tq, dq + i_n * Tq * F
    if w is not None:
        w = w + (i_n % HEADS) * s_wh
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    o_c = i_c * BLOCK_F + tl.arange(0, BLOCK_F).to(tl.int64)
    m_q, m_c = o_q < Tq, o_c < F
    b_m, b_l = tl.load(stats + o_q, mask=m_q, other=0.0), tl.load(stats + Tq + o_q, mask=m_q, other=1.0)
    i_b = i_n // HEADS
    seed = load_seed(seed, HAS_DROPOUT)
    n_valid, hi = _key_range(lengths, i_b, T, HAS_LENGTHS, True)
    # delta from the very p and dp that every ds uses, not dO . O from the forward: their rounding
    # differs, and ds = p (dp - delta) amplifies the difference wherever one key dominates a row.
    b_delta = tl.zeros([BLOCK_Q], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t, m_t, p, p_v, dp = _key_probs(q, k, w, val, mask, do, dprob, i_n, o_q, m_q, b_m, b_l, t0, Tq, T, n_valid, F, D,
                                          scale, p_drop, seed, i_b * s_mn, i_n * Tq * T, s_mt, s_qt, s_qf, s_kt, s_kf,
                                          s_w, s_vt, s_vd, s_dq, s_dd, SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB,
                                          HAS_DROPOUT, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F, BLOCK_D)
        b_delta += tl.sum(p * dp, axis=1)
    tl.store(delta + o_q, b_delta, mask=o_q < tl.where(i_c == 0, Tq, 0))
    if NEED_DQ:
        acc = tl.zeros([BLOCK_Q, BLOCK_F], CDT)
        for t0 in range(0, hi, BLOCK_T):  # the same blocks again: ds needs the complete delta_i
            o_t, m_t, p, p_v, dp = _key_probs(q, k, w, val, mask, do, dprob, i_n, o_q, m_q, b_m, b_l, t0, Tq, T, n_valid, F,
                                              D, scale, p_drop, seed, i_b * s_mn, i_n * Tq * T, s_mt, s_qt, s_qf, s_kt,
                                              s_kf, s_w, s_vt, s_vd, s_dq, s_dd, SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB,
                                              HAS_DROPOUT, USE_DOT, CDT, DOT_DT, PRECISION,
                                              BLOCK_Q, BLOCK_T, BLOCK_F, BLOCK_D)
            ds = _dscores(p, dp, b_delta, scale, SCORE)
            g, _ = _score_grad(ds, q, k, w, o_q, o_t, m_q, m_t, o_c, m_c, s_qt, s_qf, s_kt, s_kf, s_w,
                               1, SCORE, USE_DOT, CDT, DOT_DT, PRECISION)
            acc += g
        tl.store(dq + o_q[:, None] * F + o_c[None, :], acc, mask=m_q[:, None] & m_c[None, :])


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_RUNTIME)
def attention_bwd_dkv(
    q, k, w, val, lengths, mask, do, stats, delta, dprob, dk, dval, dw_part,  # outputs contiguous, CDT
    Tq, T, F, D, scale, HEADS, p_drop, seed, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_wh, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    SCORE: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
    HAS_DPROB: tl.constexpr,
):
    """Grid (B, cdiv(T, BT), max(cdiv(F, BF), cdiv(D, BD))): for its key block, program i_c
    accumulates in registers the columns block i_c of dk [B, T, F], of dval [B, T, D]
    (dval_j = sum_i p_v,ij dO_i) and, additive only, of each key's share of the score vector's
    gradient, dw_part [B, T, F] (summed over the batch and the keys by the caller); a block
    past F or D has no columns there. Every output element is written once, by its owner."""
    i_n = tl.program_id(0).to(tl.int64)
    i_t, i_c = tl.program_id(1), tl.program_id(2)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    stats, delta, dk, dval = stats + i_n * 2 * Tq, delta + i_n * Tq, dk + i_n * T * F, dval + i_n * T * D
    if w is not None:
        w = w + (i_n % HEADS) * s_wh
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    o_c = i_c * BLOCK_F + tl.arange(0, BLOCK_F).to(tl.int64)
    o_e = i_c * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    m_c, m_e, m_tt = o_c < F, o_e < D, o_t < T
    i_b = i_n // HEADS
    seed = load_seed(seed, HAS_DROPOUT)
    n_valid, _ = _key_range(lengths, i_b, T, HAS_LENGTHS, False)
    m_t = key_valid(o_t, T, n_valid, mask, i_b * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
    acc_k = tl.zeros([BLOCK_T, BLOCK_F], CDT)
    acc_w = tl.zeros([BLOCK_T, BLOCK_F], CDT)
    acc_v = tl.zeros([BLOCK_T, BLOCK_D], CDT)
    hi = tl.where(tl.max(m_t.to(tl.int32), axis=0) > 0, Tq, 0)  # a fully masked key block has no gradient
    for q0 in range(0, hi, BLOCK_Q):
        o_q = q0 + tl.arange(0, BLOCK_Q).to(tl.int64)
        m_q = o_q < Tq
        b_m, b_l = tl.load(stats + o_q, mask=m_q, other=0.0), tl.load(stats + Tq + o_q, mask=m_q, other=1.0)
        b_delta = tl.load(delta + o_q, mask=m_q, other=0.0)
        s = _scores(q, k, w, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf, s_w,
                    SCORE, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
        p, p_v, dp = dprobs(s, b_m, b_l, i_n, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, Tq, D, T, p_drop, seed,
                            s_dq, s_dd, s_vt, s_vd, HAS_DPROB, HAS_DROPOUT, USE_DOT, CDT, DOT_DT, PRECISION,
                            BLOCK_Q, BLOCK_T, BLOCK_D)
        b_do = tl.load(do + o_q[:, None] * s_dq + o_e[None, :] * s_dd, mask=m_q[:, None] & m_e[None, :], other=0.0)
        acc_v += mm(tl.trans(p_v), b_do, USE_DOT, CDT, DOT_DT, PRECISION)
        g, g_w = _score_grad(_dscores(p, dp, b_delta, scale, SCORE), q, k, w, o_q, o_t, m_q, m_t, o_c, m_c,
                             s_qt, s_qf, s_kt, s_kf, s_w, 0, SCORE, USE_DOT, CDT, DOT_DT, PRECISION)
        acc_k += g
        acc_w += g_w
    m_k = m_tt[:, None] & m_c[None, :]
    tl.store(dk + o_t[:, None] * F + o_c[None, :], acc_k, mask=m_k)
    if dw_part is not None:
        tl.store(dw_part + i_n * T * F + o_t[:, None] * F + o_c[None, :], acc_w, mask=m_k)
    tl.store(dval + o_t[:, None] * D + o_e[None, :], acc_v, mask=m_tt[:, None] & m_e[None, :])
