"""Additive (Bahdanau) attention: s_ij = w . tanh(qp_i + kp_j), masked softmax over j, and the
weighted sum of values, fused; forward and a flash-style backward that recomputes the scores.

qp (N, Tq, A) and kp (N, T, A) are the projected queries and keys (GEMMs done by the caller;
attention pooling passes a zero qp with stride 0). Memory stays O(N Tq (A + D)): the
(Tq, T, A) tanh tensor only ever exists as one [BQ, BT, BA] register tile.

Saved for backward: the log-sum-exp per query row (``lse``; +inf for a fully masked row, so
that every recomputed probability of that row is exp(-inf) = 0). The backward runs two
kernels, one per key block (dkp, dvalues, partial dw) and one per query block (dqp), instead
of one with atomics: each program owns its output rows, so results are deterministic and the
kernels may be autotuned (they zero their own outputs first, so a re-run is idempotent).
"""

import torch
import triton
import triton.language as tl

from .attention_common import (accumulate, accumulate_product, bucket, clamp, dprobs, dscores, element_bytes, key_valid, mm, shared_limit,
                               tanh)

_KEY = ["KEY_TQ", "KEY_T", "KEY_A", "KEY_D"]  # the shape's bucket: powers of two (attention_common.bucket)


def additive_configs(Tq=None, T=None, A=None, D=None, dtype=torch.float32, interpret=False, arch=None):
    """Launch configurations for the three additive kernels. With a shape: at most four, decided
    by its bucket and dtype alone and fitting the target's shared memory (``arch``, default the
    current target); this is also the autotuner's pruning, so what a compile check sees is what
    gets timed. Without one: every configuration a shape can get (the autotuner's list). Under
    the interpreter: exactly one (and no driver). Block sides are >= 16 wherever they meet in a
    tl.dot (BLOCK_A never does: it only chunks the tanh tile)."""
    if interpret:
        bq = 1 if Tq == 1 else 16  # Tq = 1 (pooling) takes the no-dot path, Tq > 1 the dot path
        return [triton.Config({"BLOCK_Q": bq, "BLOCK_T": 16, "BLOCK_A": 16, "BLOCK_D": 32}, num_warps=4)]
    if Tq is None:
        return _ALL
    dot_b, cdt_b = element_bytes(dtype)
    fits = [c for c in _candidates(bucket(Tq, T, A, D), cdt_b) if shared_bytes(c, dot_b, cdt_b) <= shared_limit(arch)]
    return fits[:4]


def _config(bq, bt, ba, bd, warps, stages):
    return triton.Config({"BLOCK_Q": bq, "BLOCK_T": bt, "BLOCK_A": ba, "BLOCK_D": bd}, num_warps=warps, num_stages=stages)


TILE_BYTES_PER_THREAD = 64  # of the [BQ, BT, BA] tanh tile, in the compute dtype


def _candidates(key, cdt_b):
    """Best first. The [BQ, BT, BA] tanh tile lives in registers, so it is sized per thread:
    up to 64 bytes (16 fp32 values) with 4 warps, twice that with 8 warps, which only get
    tiles too big for 4 (past that the backward kernels spill on sm_90). Per warp count, the
    largest tiles that fit, the widest BLOCK_A first (fewer passes over A), two each. BLOCK_Q
    is the bucket up to 16: below 16 the products run as broadcast sums (no tl.dot), which
    makes [BQ, BT, BD] a register tile as well (allowed twice the budget).
    Every bucket gets one: [BQ, 16, 8] fits 4 warps below BQ = 16 and 8 warps at 16."""
    tq, t, a, d = key
    budget = {w: TILE_BYTES_PER_THREAD * 32 * w // cdt_b for w in (4, 8)}  # tile elements
    bq, bd = min(tq, 16), clamp(d, 16, 64 if cdt_b == 8 else 128)
    if bq < 16:
        bd = min(bd, 2 * budget[4] // (16 * bq))  # so that BLOCK_T = 16 fits 4 warps
    out = []
    for w, floor in ((4, 0), (8, budget[4])):
        tiles = [
            (bq * bt * ba, ba, bt)
            for bt in (16, 32, 64, 128) if bt <= max(16, t)
            for ba in (8, 16, 32) if ba <= max(8, a)
            if floor < bq * bt * ba <= budget[w] and (bq >= 16 or bq * bt * bd <= 2 * budget[w])
        ]
        out += [_config(bq, bt, ba, bd, w, 2) for _, ba, bt in sorted(tiles, reverse=True)[:2]]
    return out


def shared_bytes(cfg, dot_b, cdt_b):
    """Shared memory a configuration may need, an upper estimate (checked against sm_90
    compiles, docs/DECISIONS.md): each 2-D tile [BQ, BT], [BT, BD], [BQ, BD] once in the compute
    dtype for layout conversions and, on the tl.dot path (BQ >= 16), num_stages times as a
    dot operand."""
    bq, bt, ba, bd = (cfg.kwargs[n] for n in ("BLOCK_Q", "BLOCK_T", "BLOCK_A", "BLOCK_D"))
    per_element = cdt_b + (cfg.num_stages * dot_b if bq >= 16 else 0)
    return per_element * (bq * bt + bt * bd + bq * bd)


_ALL = [
    _config(bq, bt, ba, bd, w, 2)
    for bq in (1, 2, 4, 8, 16) for bt in (16, 32, 64, 128) for ba in (8, 16, 32) for bd in (16, 32, 64, 128)
    for w in (4, 8)
]


def _prune(configs, nargs, **kwargs):
    """The autotuner's pruning: additive_configs of the bucket (the KEY_* arguments) and dtype."""
    return additive_configs(nargs["KEY_TQ"], nargs["KEY_T"], nargs["KEY_A"], nargs["KEY_D"], dtype=nargs["val"].dtype)


_HEURISTICS = {
    "HAS_LENGTHS": lambda a: a["lengths"] is not None,
    "HAS_MASK": lambda a: a["mask"] is not None,
    "USE_DOT": lambda a: min(a["BLOCK_Q"], a["BLOCK_T"], a["BLOCK_D"]) >= 16,
}


@triton.jit
def _tanh_tile(qp, kp, w, o_q, o_t, m_q, m_t, a0, A, s_qt, s_qa, s_kt, s_ka, s_w,
               BLOCK_A: tl.constexpr, CDT: tl.constexpr):
    """Columns [a0, a0 + BA) of A: offsets, mask, w there, and tanh(qp_ia + kp_ja) [BQ, BT, BA]."""
    o_a = a0 + tl.arange(0, BLOCK_A)
    m_a = o_a < A
    b_q = tl.load(qp + o_q[:, None] * s_qt + o_a[None, :] * s_qa, mask=m_q[:, None] & m_a[None, :], other=0.0)
    b_k = tl.load(kp + o_t[:, None] * s_kt + o_a[None, :] * s_ka, mask=m_t[:, None] & m_a[None, :], other=0.0)
    b_w = tl.load(w + o_a * s_w, mask=m_a, other=0.0).to(CDT)
    return o_a, m_a, b_w, tanh(b_q.to(CDT)[:, None, :] + b_k.to(CDT)[None, :, :])


@triton.jit
def _scores(qp, kp, w, o_q, o_t, m_q, m_t, A, s_qt, s_qa, s_kt, s_ka, s_w,
            BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_A: tl.constexpr, CDT: tl.constexpr):
    """[BQ, BT] scores w . tanh(qp_i + kp_j), summed over A in chunks of BLOCK_A."""
    s = tl.zeros([BLOCK_Q, BLOCK_T], dtype=CDT)
    for a0 in range(0, A, BLOCK_A):
        o_a, m_a, b_w, b_t = _tanh_tile(qp, kp, w, o_q, o_t, m_q, m_t, a0, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_A, CDT)
        s += tl.sum(b_t * b_w[None, None, :], axis=2)
    return s


@triton.jit
def _key_block(qp, kp, w, mask, o_q, m_q, t0, T, n_valid, A, mask_row, s_mt, s_qt, s_qa, s_kt, s_ka, s_w,
               HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr,
               BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_A: tl.constexpr, CDT: tl.constexpr):
    """Key block from t0: offsets [BT], valid keys [BT] and scores [BQ, BT], -inf where masked."""
    o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
    m_t = key_valid(o_t, T, n_valid, mask, mask_row, s_mt, HAS_LENGTHS, HAS_MASK)
    s = _scores(qp, kp, w, o_q, o_t, m_q, m_t, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_Q, BLOCK_T, BLOCK_A, CDT)
    return o_t, m_t, tl.where(m_t[None, :], s, float("-inf"))


@triton.autotune(configs=additive_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def additive_fwd(
    qp, kp, w, val, lengths, mask, out, lse, scores,  # pointers; lse [N, Tq], scores [N, Tq, T] contiguous
    Tq, T, A, D, KEY_TQ, KEY_T, KEY_A, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qa, s_kn, s_kt, s_ka, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_on, s_ot, s_od,
    NEED_WEIGHTS: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ), cdiv(D, BD)). Online softmax over key blocks; programs on other
    value-column blocks recompute the same scores, only column block 0 writes lse/scores."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q, i_d = tl.program_id(1), tl.program_id(2)
    qp, kp, val, out = qp + i_n * s_qn, kp + i_n * s_kn, val + i_n * s_vn, out + i_n * s_on
    lse = lse + i_n * Tq
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    m_q, m_d = o_q < Tq, o_d < D
    tq_w = tl.where(i_d == 0, Tq, 0)  # rows whose lse/scores this program writes: value block 0 only
    n_valid, hi = T, T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
        if not NEED_WEIGHTS:  # scores past the length are never read
            hi = tl.minimum(n_valid, T)
    m_i = tl.full([BLOCK_Q], float("-inf"), CDT)
    l_i = tl.zeros([BLOCK_Q], CDT)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
        m_t = key_valid(o_t, T, n_valid, mask, i_n * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
        s = _scores(qp, kp, w, o_q, o_t, m_q, m_t, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_Q, BLOCK_T, BLOCK_A, CDT)
        s = tl.where(m_t[None, :], s, float("-inf"))  # [BQ, BT]
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


_BWD_HEURISTICS = {**_HEURISTICS, "HAS_DPROB": lambda a: a["dprob"] is not None}


@triton.autotune(configs=additive_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def additive_bwd_dq(
    qp, kp, w, val, lengths, mask, do, lse, delta, dprob, dqp,  # delta [N, Tq], dqp [N, Tq, A] written, CDT
    Tq, T, A, D, KEY_TQ, KEY_T, KEY_A, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qa, s_kn, s_kt, s_ka, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    NEED_DQ: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ)): delta_i = sum_j p_ij dp_ij (always; the key-block kernel, run
    after this one, reads it) and, when NEED_DQ, dqp_ia = sum_j ds_ij w_a (1 - tanh^2(qp_ia + kp_ja))."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q = tl.program_id(1)
    qp, kp, val, do = qp + i_n * s_qn, kp + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta, dqp = lse + i_n * Tq, delta + i_n * Tq, dqp + i_n * Tq * A
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    m_q = o_q < Tq
    b_lse = tl.load(lse + o_q, mask=m_q, other=float("inf"))
    n_valid, hi = T, T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
        hi = tl.minimum(n_valid, T)
    # delta from the very p and dp that every ds uses, not dO . O from the forward: their rounding
    # differs, and ds = p (dp - delta) amplifies the difference wherever one key dominates a row.
    b_delta = tl.zeros([BLOCK_Q], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t, m_t, s = _key_block(qp, kp, w, mask, o_q, m_q, t0, T, n_valid, A, i_n * s_mn, s_mt,
                                 s_qt, s_qa, s_kt, s_ka, s_w, HAS_LENGTHS, HAS_MASK, BLOCK_Q, BLOCK_T, BLOCK_A, CDT)
        p, dp = dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd, s_vt, s_vd,
                       HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
        b_delta += tl.sum(p * dp, axis=1)
    tl.store(delta + o_q, b_delta, mask=m_q)
    if NEED_DQ:
        for a0 in range(0, A, BLOCK_A):
            o_a = a0 + tl.arange(0, BLOCK_A)
            tl.store(dqp + o_q[:, None] * A + o_a[None, :], tl.zeros([BLOCK_Q, BLOCK_A], CDT), mask=m_q[:, None] & (o_a < A)[None, :])
        tl.debug_barrier()
        for t0 in range(0, hi, BLOCK_T):
            o_t, m_t, s = _key_block(qp, kp, w, mask, o_q, m_q, t0, T, n_valid, A, i_n * s_mn, s_mt,
                                     s_qt, s_qa, s_kt, s_ka, s_w, HAS_LENGTHS, HAS_MASK, BLOCK_Q, BLOCK_T, BLOCK_A, CDT)
            p, ds = dscores(s, b_lse, b_delta, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd,
                            s_vt, s_vd, HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
            for a0 in range(0, A, BLOCK_A):
                o_a, m_a, b_w, b_t = _tanh_tile(qp, kp, w, o_q, o_t, m_q, m_t, a0, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_A, CDT)
                g = tl.sum(ds[:, :, None] * (1.0 - b_t * b_t), axis=1) * b_w[None, :]  # [BQ, BA]
                accumulate(dqp + o_q[:, None] * A + o_a[None, :], g, m_q[:, None] & m_a[None, :])


@triton.autotune(configs=additive_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def additive_bwd_dkv(
    qp, kp, w, val, lengths, mask, do, lse, delta, dprob, dkp, dval, dw_part,  # outputs contiguous, CDT
    Tq, T, A, D, KEY_TQ, KEY_T, KEY_A, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qa, s_kn, s_kt, s_ka, s_w, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(T, BT)): dkp [N, T, A], dval [N, T, D], and each key's share of the score
    vector's gradient, dw_part [N, T, A] (summed over N and T by the caller; one row per key,
    whatever the block size, so every row is written exactly once by its owner)."""
    i_n = tl.program_id(0).to(tl.int64)
    i_t = tl.program_id(1)
    qp, kp, val, do = qp + i_n * s_qn, kp + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta = lse + i_n * Tq, delta + i_n * Tq
    dkp, dval, dw_part = dkp + i_n * T * A, dval + i_n * T * D, dw_part + i_n * T * A
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    n_valid = T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
    m_t = key_valid(o_t, T, n_valid, mask, i_n * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
    m_tt = o_t < T
    for a0 in range(0, A, BLOCK_A):
        o_a = a0 + tl.arange(0, BLOCK_A)
        m_a = o_a < A
        tl.store(dkp + o_t[:, None] * A + o_a[None, :], tl.zeros([BLOCK_T, BLOCK_A], CDT), mask=m_tt[:, None] & m_a[None, :])
        tl.store(dw_part + o_t[:, None] * A + o_a[None, :], tl.zeros([BLOCK_T, BLOCK_A], CDT), mask=m_tt[:, None] & m_a[None, :])
    for d0 in range(0, D, BLOCK_D):
        o_d = d0 + tl.arange(0, BLOCK_D)
        tl.store(dval + o_t[:, None] * D + o_d[None, :], tl.zeros([BLOCK_T, BLOCK_D], CDT), mask=m_tt[:, None] & (o_d < D)[None, :])
    tl.debug_barrier()
    hi = tl.where(tl.max(m_t.to(tl.int32), axis=0) > 0, Tq, 0)  # a fully masked key block has no gradient
    for q0 in range(0, hi, BLOCK_Q):
        o_q = q0 + tl.arange(0, BLOCK_Q).to(tl.int64)
        m_q = o_q < Tq
        b_lse = tl.load(lse + o_q, mask=m_q, other=float("inf"))
        b_delta = tl.load(delta + o_q, mask=m_q, other=0.0)
        s = _scores(qp, kp, w, o_q, o_t, m_q, m_t, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_Q, BLOCK_T, BLOCK_A, CDT)
        s = tl.where(m_t[None, :], s, float("-inf"))
        p, ds = dscores(s, b_lse, b_delta, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd, s_vt, s_vd,
                        HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
        p_t = tl.trans(p)  # [BT, BQ]
        accumulate_product(dval, o_t, m_tt, p_t, do, o_q, m_q, s_dq, s_dd, D, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_D)
        for a0 in range(0, A, BLOCK_A):
            o_a, m_a, b_w, b_t = _tanh_tile(qp, kp, w, o_q, o_t, m_q, m_t, a0, A, s_qt, s_qa, s_kt, s_ka, s_w, BLOCK_A, CDT)
            g = tl.sum(ds[:, :, None] * (1.0 - b_t * b_t), axis=0) * b_w[None, :]  # [BT, BA]
            accumulate(dkp + o_t[:, None] * A + o_a[None, :], g, m_tt[:, None] & m_a[None, :])
            accumulate(dw_part + o_t[:, None] * A + o_a[None, :], tl.sum(ds[:, :, None] * b_t, axis=0), m_tt[:, None] & m_a[None, :])
