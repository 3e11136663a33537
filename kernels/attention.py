"""Fused attention for two scores, one set of kernels: a masked softmax over the keys and the
weighted sum of the values, forward and a flash-style backward that recomputes the scores.

The constexpr ``SCORE`` picks the score and its gradient, nothing else differs:
  "additive" (Bahdanau)  s_ij = w . tanh(q_i + k_j), q and k the projected queries and keys
                         (attention pooling passes a zero q, one query row); ``scale`` is 1
  "dot" (Luong)          s_ij = scale * q_i . k_j; ``w`` is None
q (N, Tq, F), k (N, T, F), values (N, T, D); F is the score's feature size (the attention size
A, or the key size K), chunked by BLOCK_F. Memory stays O(N Tq (F + D)): the additive
(Tq, T, F) tanh tensor only ever exists as one [BQ, BT, BF] register tile.

Saved for backward: the log-sum-exp per query row (``lse``; +inf for a fully masked row, so
every recomputed probability of that row is exp(-inf) = 0). The backward runs two kernels,
one per query block (delta, dq), then one per key block (dk, dvalues, and the additive score
vector's per-key share dw_part), instead of one with atomics: each program owns its output
rows, so results are deterministic and the kernels may be autotuned (they zero their own
outputs first, so a re-run is idempotent).

Conventions: ``o_`` offsets, ``m_`` masks, ``b_`` register blocks, ``s_`` strides, ``p_``
pointers; shapes in comments as ``# [BQ, BT]``. Every loaded value is converted to the compute
dtype ``CDT`` (float32, or float64 for gradcheck) before arithmetic, except the operands of
``tl.dot`` on a GPU, which stay in ``DOT_DT`` (the input dtype: bf16/fp16 tensor-core dots with
fp32 accumulation). Under the interpreter ``DOT_DT`` is ``CDT`` as well, because bf16
arithmetic is wrong there. Launch configurations: attention_configs.py.
"""

import triton
import triton.language as tl

from .activations import tanh
from .attention_configs import every_config, prune

# The autotune key: the score and the shape's bucket (powers of two, attention_configs.bucket).
_BUCKET = ["KEY_TQ", "KEY_T", "KEY_F", "KEY_D"]
_KEY = ["SCORE", *_BUCKET]

_HEURISTICS = {
    "HAS_LENGTHS": lambda a: a["lengths"] is not None,
    "HAS_MASK": lambda a: a["mask"] is not None,
    # tl.dot wherever two blocks meet in a product: the additive BLOCK_F never does.
    "USE_DOT": lambda a: min(a["BLOCK_Q"], a["BLOCK_T"], a["BLOCK_D"], a["BLOCK_F"] if a["SCORE"] == "dot" else 16) >= 16,
}
_BWD_HEURISTICS = {**_HEURISTICS, "HAS_DPROB": lambda a: a["dprob"] is not None}


# ------------------------------------------------------------------------------ shared steps


@triton.jit
def mm(a, b, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr):
    """a [M, K] @ b [K, N] -> [M, N] in CDT. tl.dot (tensor cores) when every tile side is
    >= 16, else a broadcast multiply-sum (for the small query blocks of attention pooling)."""
    if USE_DOT:
        return tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PRECISION, out_dtype=CDT)
    else:
        return tl.sum(a.to(CDT)[:, :, None] * b.to(CDT)[None, :, :], axis=1)


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
def dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, D, T, s_dq, s_dd, s_vt, s_vd,
           HAS_DPROB: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
           PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """From masked scores [BQ, BT]: p = exp(s - lse) and dp = dO . v_j + dprob_ij (0 where masked)."""
    p = tl.exp(s - b_lse[:, None])
    dp = row_dots(do, o_q, m_q, s_dq, s_dd, val, o_t, m_t, s_vt, s_vd, D,
                  USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
    if HAS_DPROB:
        dp += tl.load(dprob + dprob_row + o_q[:, None] * T + o_t[None, :], mask=m_q[:, None] & m_t[None, :], other=0.0).to(CDT)
    return p, dp


@triton.jit
def accumulate(ptrs, val, mask):
    """``*ptrs += val`` in global memory, for rows this program owns alone (deterministic,
    no atomics). The barriers order the read-modify-write across the threads of the program:
    a replicated layout may load in one warp what another warp stores."""
    old = tl.load(ptrs, mask=mask, other=0.0)
    tl.debug_barrier()
    tl.store(ptrs, old + val, mask=mask)
    tl.debug_barrier()


@triton.jit
def accumulate_product(out, o_r, m_r, a, src, o_s, m_s, s_row, s_col, N,
                       USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_N: tl.constexpr):
    """``out[o_r, :N] += a @ src[o_s, :N]`` (``out`` row-major with N columns, rows this program
    owns), BLOCK_N columns at a time: the gradient updates of the backward kernels."""
    for n0 in range(0, N, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)
        m_n = o_n < N
        b = tl.load(src + o_s[:, None] * s_row + o_n[None, :] * s_col, mask=m_s[:, None] & m_n[None, :], other=0.0)
        accumulate(out + o_r[:, None] * N + o_n[None, :], mm(a, b, USE_DOT, CDT, DOT_DT, PRECISION),
                   m_r[:, None] & m_n[None, :])


@triton.jit
def zero_rows(out, out2, o_r, m_r, N, CDT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """``out[o_r, :N] = 0`` and, unless None, ``out2[o_r, :N] = 0`` (both row-major with N
    columns), BLOCK_N columns at a time."""
    for n0 in range(0, N, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)
        m = m_r[:, None] & (o_n < N)[None, :]
        tl.store(out + o_r[:, None] * N + o_n[None, :], tl.zeros([BLOCK_R, BLOCK_N], CDT), mask=m)
        if out2 is not None:
            tl.store(out2 + o_r[:, None] * N + o_n[None, :], tl.zeros([BLOCK_R, BLOCK_N], CDT), mask=m)


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
    return o_f, m_f, b_w, tanh(b_q.to(CDT)[:, None, :] + b_k.to(CDT)[None, :, :])


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
def _key_probs(q, k, w, val, mask, do, dprob, o_q, m_q, b_lse, t0, T, n_valid, F, D, scale, mask_row, dprob_row,
               s_mt, s_qt, s_qf, s_kt, s_kf, s_w, s_vt, s_vd, s_dq, s_dd,
               SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DPROB: tl.constexpr,
               USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr):
    """Key block from t0 for the query rows o_q: offsets [BT], valid keys [BT], and the
    recomputed p and dp [BQ, BT] (dprobs)."""
    o_t, m_t, s = _key_block(q, k, w, mask, o_q, m_q, t0, T, n_valid, F, scale, mask_row, s_mt, s_qt, s_qf, s_kt, s_kf,
                             s_w, SCORE, HAS_LENGTHS, HAS_MASK, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
    p, dp = dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, D, T, s_dq, s_dd, s_vt, s_vd,
                   HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
    return o_t, m_t, p, dp


# ------------------------------------------------------------------------------ score gradients


@triton.jit
def _additive_grad(dx, dw_part, ds, q, k, w, o_q, o_t, m_q, m_t, o_r, m_r, F, s_qt, s_qf, s_kt, s_kf, s_w,
                   AXIS: tl.constexpr, CDT: tl.constexpr, BLOCK_F: tl.constexpr):
    """Through the tanh tile, summed over AXIS of [BQ, BT]: dx[o_r] += sum ds w (1 - tanh^2)
    (AXIS 1: dx = dq, rows o_q; AXIS 0: dx = dk, rows o_t) and, unless None, dw_part[o_r] +=
    sum ds tanh. ``dx`` and ``dw_part`` are row-major with F columns."""
    for f0 in range(0, F, BLOCK_F):
        o_f, m_f, b_w, b_t = _tanh_tile(q, k, w, o_q, o_t, m_q, m_t, f0, F, s_qt, s_qf, s_kt, s_kf, s_w, BLOCK_F, CDT)
        g = tl.sum(ds[:, :, None] * (1.0 - b_t * b_t), axis=AXIS) * b_w[None, :]  # [BQ or BT, BF]
        accumulate(dx + o_r[:, None] * F + o_f[None, :], g, m_r[:, None] & m_f[None, :])
        if dw_part is not None:
            accumulate(dw_part + o_r[:, None] * F + o_f[None, :], tl.sum(ds[:, :, None] * b_t, axis=AXIS),
                       m_r[:, None] & m_f[None, :])


@triton.jit
def _dot_grad(dx, ds, q, k, o_q, o_t, m_q, m_t, o_r, m_r, F, s_qt, s_qf, s_kt, s_kf,
              AXIS: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
              PRECISION: tl.constexpr, BLOCK_F: tl.constexpr):
    """dq[o_r] += ds @ k (AXIS 1, ds [BQ, BT]) or dk[o_r] += ds @ q (AXIS 0, ds [BT, BQ]), with
    ds scaled and oriented by _dscores."""
    if AXIS == 1:
        accumulate_product(dx, o_r, m_r, ds, k, o_t, m_t, s_kt, s_kf, F, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_F)
    else:
        accumulate_product(dx, o_r, m_r, ds, q, o_q, m_q, s_qt, s_qf, F, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_F)


@triton.jit
def _dscores(p, dp, b_delta, scale, AXIS: tl.constexpr, SCORE: tl.constexpr):
    """ds = p (dp - delta_i) [BQ, BT], as _score_grad takes it: the dot score's carries the scale
    and, for dk (AXIS 0), is transposed to [BT, BQ]. The key-block kernel forms it before its
    dvalues update: a transpose after that update costs the dot kernel registers (sm_90)."""
    ds = p * (dp - b_delta[:, None])
    if SCORE == "dot":
        ds = ds * scale
        if AXIS == 0:
            ds = tl.trans(ds)
    return ds


@triton.jit
def _score_grad(dx, dw_part, ds, q, k, w, o_q, o_t, m_q, m_t, o_r, m_r, F, s_qt, s_qf, s_kt, s_kf, s_w,
                AXIS: tl.constexpr, SCORE: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr,
                DOT_DT: tl.constexpr, PRECISION: tl.constexpr, BLOCK_F: tl.constexpr):
    """What ds (from _dscores) adds to the rows o_r of a feature gradient (AXIS 1: dq, AXIS 0:
    dk) and, additive only, to dw_part."""
    if SCORE == "additive":
        _additive_grad(dx, dw_part, ds, q, k, w, o_q, o_t, m_q, m_t, o_r, m_r, F, s_qt, s_qf, s_kt, s_kf, s_w,
                       AXIS, CDT, BLOCK_F)
    else:
        _dot_grad(dx, ds, q, k, o_q, o_t, m_q, m_t, o_r, m_r, F, s_qt, s_qf, s_kt, s_kf,
                  AXIS, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_F)


# ------------------------------------------------------------------------------ the kernels


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=_BUCKET)
def attention_fwd(
    q, k, w, val, lengths, mask, out, lse, scores,  # pointers; lse [N, Tq], scores [N, Tq, T] contiguous
    Tq, T, F, D, scale, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_on, s_ot, s_od,
    SCORE: tl.constexpr, NEED_WEIGHTS: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ), cdiv(D, BD)). Online softmax over key blocks; programs on other
    value-column blocks recompute the same scores, only column block 0 writes lse/scores."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q, i_d = tl.program_id(1), tl.program_id(2)
    q, k, val, out, lse = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, out + i_n * s_on, lse + i_n * Tq
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    m_q, m_d = o_q < Tq, o_d < D
    tq_w = tl.where(i_d == 0, Tq, 0)  # rows whose lse/scores this program writes: value block 0 only
    n_valid, hi = _key_range(lengths, i_n, T, HAS_LENGTHS, not NEED_WEIGHTS)  # weights: all T (-inf past the length)
    m_i = tl.full([BLOCK_Q], float("-inf"), CDT)
    l_i = tl.zeros([BLOCK_Q], CDT)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t, m_t, s = _key_block(q, k, w, mask, o_q, m_q, t0, T, n_valid, F, scale, i_n * s_mn, s_mt,
                                 s_qt, s_qf, s_kt, s_kf, s_w, SCORE, HAS_LENGTHS, HAS_MASK,
                                 USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)  # [BQ, BT]
        if NEED_WEIGHTS:
            m_s = (o_q < tq_w)[:, None] & (o_t < T)[None, :]
            tl.store(scores + i_n * Tq * T + o_q[:, None] * T + o_t[None, :], s, mask=m_s)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no (-inf) - (-inf) in a masked row
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        b_v = tl.load(val + o_t[:, None] * s_vt + o_d[None, :] * s_vd, mask=m_t[:, None] & m_d[None, :], other=0.0)
        acc = acc * alpha[:, None] + mm(p, b_v, USE_DOT, CDT, DOT_DT, PRECISION)
        m_i = m_new
    empty = l_i == 0.0  # fully masked row: zero context, lse = +inf
    acc = acc / tl.where(empty, 1.0, l_i)[:, None]
    tl.store(out + o_q[:, None] * s_ot + o_d[None, :] * s_od, acc.to(out.dtype.element_ty), mask=m_q[:, None] & m_d[None, :])
    b_lse = tl.where(empty, float("inf"), m_i + tl.log(tl.where(empty, 1.0, l_i)))
    tl.store(lse + o_q, b_lse, mask=o_q < tq_w)


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_BUCKET)
def attention_bwd_dq(
    q, k, w, val, lengths, mask, do, lse, delta, dprob, dq,  # delta [N, Tq] and dq [N, Tq, F] written, CDT
    Tq, T, F, D, scale, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    SCORE: tl.constexpr, NEED_DQ: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ)): delta_i = sum_j p_ij dp_ij (always; the key-block kernel, run
    after this one, reads it) and, when NEED_DQ, dq_i = sum_j ds_ij (d s_ij / d q_i)."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q = tl.program_id(1)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta, dq = lse + i_n * Tq, delta + i_n * Tq, dq + i_n * Tq * F
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    m_q = o_q < Tq
    b_lse = tl.load(lse + o_q, mask=m_q, other=float("inf"))
    n_valid, hi = _key_range(lengths, i_n, T, HAS_LENGTHS, True)
    # delta from the very p and dp that every ds uses, not dO . O from the forward: their rounding
    # differs, and ds = p (dp - delta) amplifies the difference wherever one key dominates a row.
    b_delta = tl.zeros([BLOCK_Q], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t, m_t, p, dp = _key_probs(q, k, w, val, mask, do, dprob, o_q, m_q, b_lse, t0, T, n_valid, F, D, scale,
                                     i_n * s_mn, i_n * Tq * T, s_mt, s_qt, s_qf, s_kt, s_kf, s_w, s_vt, s_vd, s_dq, s_dd,
                                     SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION,
                                     BLOCK_Q, BLOCK_T, BLOCK_F, BLOCK_D)
        b_delta += tl.sum(p * dp, axis=1)
    tl.store(delta + o_q, b_delta, mask=m_q)
    if NEED_DQ:
        zero_rows(dq, None, o_q, m_q, F, CDT, BLOCK_Q, BLOCK_F)
        tl.debug_barrier()
        for t0 in range(0, hi, BLOCK_T):  # the same blocks again: ds needs the complete delta_i
            o_t, m_t, p, dp = _key_probs(q, k, w, val, mask, do, dprob, o_q, m_q, b_lse, t0, T, n_valid, F, D, scale,
                                         i_n * s_mn, i_n * Tq * T, s_mt, s_qt, s_qf, s_kt, s_kf, s_w, s_vt, s_vd, s_dq,
                                         s_dd, SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION,
                                         BLOCK_Q, BLOCK_T, BLOCK_F, BLOCK_D)
            ds = _dscores(p, dp, b_delta, scale, 1, SCORE)
            _score_grad(dq, None, ds, q, k, w, o_q, o_t, m_q, m_t, o_q, m_q, F, s_qt, s_qf, s_kt, s_kf, s_w,
                        1, SCORE, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_F)


@triton.autotune(configs=every_config(), key=_KEY, prune_configs_by={"early_config_prune": prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_BUCKET)
def attention_bwd_dkv(
    q, k, w, val, lengths, mask, do, lse, delta, dprob, dk, dval, dw_part,  # outputs contiguous, CDT
    Tq, T, F, D, scale, KEY_TQ, KEY_T, KEY_F, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qf, s_kn, s_kt, s_kf, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    SCORE: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(T, BT)): dk [N, T, F], dval [N, T, D] (dval_j = sum_i p_ij dO_i) and,
    additive only, each key's share of the score vector's gradient, dw_part [N, T, F] (None
    for dot; summed over N and T by the caller; one row per key, whatever the block size, so
    every row is written exactly once by its owner)."""
    i_n = tl.program_id(0).to(tl.int64)
    i_t = tl.program_id(1)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta, dk, dval = lse + i_n * Tq, delta + i_n * Tq, dk + i_n * T * F, dval + i_n * T * D
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    n_valid, _ = _key_range(lengths, i_n, T, HAS_LENGTHS, False)
    m_t = key_valid(o_t, T, n_valid, mask, i_n * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
    m_tt = o_t < T
    if dw_part is not None:
        dw_part = dw_part + i_n * T * F
    zero_rows(dk, dw_part, o_t, m_tt, F, CDT, BLOCK_T, BLOCK_F)
    zero_rows(dval, None, o_t, m_tt, D, CDT, BLOCK_T, BLOCK_D)
    tl.debug_barrier()
    hi = tl.where(tl.max(m_t.to(tl.int32), axis=0) > 0, Tq, 0)  # a fully masked key block has no gradient
    for q0 in range(0, hi, BLOCK_Q):
        o_q = q0 + tl.arange(0, BLOCK_Q).to(tl.int64)
        m_q = o_q < Tq
        b_lse = tl.load(lse + o_q, mask=m_q, other=float("inf"))
        b_delta = tl.load(delta + o_q, mask=m_q, other=0.0)
        s = _scores(q, k, w, o_q, o_t, m_q, m_t, F, scale, s_qt, s_qf, s_kt, s_kf, s_w,
                    SCORE, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_F)
        p, dp = dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd, s_vt, s_vd,
                       HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
        ds = _dscores(p, dp, b_delta, scale, 0, SCORE)  # before the dvalues update (see _dscores)
        accumulate_product(dval, o_t, m_tt, tl.trans(p), do, o_q, m_q, s_dq, s_dd, D, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_D)
        _score_grad(dk, dw_part, ds, q, k, w, o_q, o_t, m_q, m_t, o_t, m_tt, F, s_qt, s_qf, s_kt, s_kf, s_w,
                    0, SCORE, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_F)
