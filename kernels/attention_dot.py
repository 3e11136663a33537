"""Dot-product (Luong) attention: s_ij = scale * q_i . k_j, masked softmax over j, and the
weighted sum of values, fused; forward and a flash-style backward that recomputes the scores.

q (N, Tq, K) is the query after any "general" projection (q W, done by the caller), k
(N, T, K) the keys, values (N, T, D). Same contract as the additive kernels: lse per query
row is saved (+inf for a fully masked row); the backward runs one kernel per key block
(dk, dvalues) and one per query block (dq), each program owning its output rows.
"""

import torch
import triton
import triton.language as tl

from .attention_common import accumulate_product, bucket, clamp, dprobs, dscores, element_bytes, key_valid, mm, shared_limit

_KEY = ["KEY_TQ", "KEY_T", "KEY_K", "KEY_D"]  # the shape's bucket: powers of two (attention_common.bucket)


def dot_configs(Tq=None, T=None, K=None, D=None, dtype=torch.float32, interpret=False, arch=None):
    """Launch configurations for the three dot kernels. With a shape: at most four, decided by
    its bucket and dtype alone and fitting the target's shared memory (``arch``, default the
    current target); this is also the autotuner's pruning, so what a compile check sees is what
    gets timed. Without one: every configuration a shape can get (the autotuner's list). Under
    the interpreter: exactly one (and no driver). Every block side is >= 16 (tensor cores)."""
    if interpret:
        return [triton.Config({"BLOCK_Q": 16, "BLOCK_T": 16, "BLOCK_K": 16, "BLOCK_D": 32}, num_warps=4)]
    if Tq is None:
        return _ALL
    dot_b, cdt_b = element_bytes(dtype)
    fits = [c for c in _candidates(bucket(Tq, T, K, D), dot_b, cdt_b) if shared_bytes(c, dot_b, cdt_b) <= shared_limit(arch)]
    return fits[:4]


def _config(bq, bt, bk, bd, warps, stages):
    return triton.Config({"BLOCK_Q": bq, "BLOCK_T": bt, "BLOCK_K": bk, "BLOCK_D": bd}, num_warps=warps, num_stages=stages)


def _candidates(key, dot_b, cdt_b):
    """Best first: the bucket's query and key blocks (up to 64; 16 query rows for 4- and 8-byte
    operands, which spill past that on sm_90), then a half key block with one stage less, a
    half query block (more programs for small batches), and the first with the other warp
    count. One K block and one value block up to 128 (64 for fp64) bound the registers;
    8 warps once a [BQ, max(BT, BD)] operand tile passes 4 KB (32 bytes a thread)."""
    tq, t, k, d = key
    wide = 64 if cdt_b == 8 else 128
    bk, bd = clamp(k, 16, wide), clamp(d, 16, wide)
    bq, bt = clamp(tq, 16, 64 if dot_b == 2 else 16), clamp(t, 16, 64)
    warps = lambda q, t_: 4 if dot_b * q * max(t_, bd) <= 4096 else 8  # noqa: E731
    blocks = [
        (bq, bt, warps(bq, bt), 3),
        (bq, max(bt // 2, 16), warps(bq, max(bt // 2, 16)), 2),
        (max(bq // 2, 16), bt, warps(max(bq // 2, 16), bt), 3),
        (bq, bt, 12 - warps(bq, bt), 3),
    ]
    return [_config(q, t_, bk, bd, w, st) for q, t_, w, st in dict.fromkeys(blocks)]  # distinct, in order


def shared_bytes(cfg, dot_b, cdt_b):
    """Shared memory a configuration may need, an upper estimate (checked against sm_90
    compiles, docs/DECISIONS.md): the software pipeline keeps num_stages - 1 copies of the tl.dot
    operands loaded in a loop (q, k, dO, v: (BQ + BT) x (BK + BD)), plus the [BQ, BT] p and ds
    tiles in the compute dtype for layout conversions."""
    bq, bt, bk, bd = (cfg.kwargs[n] for n in ("BLOCK_Q", "BLOCK_T", "BLOCK_K", "BLOCK_D"))
    return (cfg.num_stages - 1) * dot_b * (bq + bt) * (bk + bd) + 2 * cdt_b * bq * bt


_ALL = [
    _config(bq, bt, bk, bd, w, st)
    for bq in (16, 32, 64) for bt in (16, 32, 64) for bk in (16, 32, 64, 128) for bd in (16, 32, 64, 128)
    for w in (4, 8) for st in (2, 3)
]


def _prune(configs, nargs, **kwargs):
    """The autotuner's pruning: dot_configs of the bucket (the KEY_* arguments) and dtype."""
    return dot_configs(nargs["KEY_TQ"], nargs["KEY_T"], nargs["KEY_K"], nargs["KEY_D"], dtype=nargs["val"].dtype)


_HEURISTICS = {
    "HAS_LENGTHS": lambda a: a["lengths"] is not None,
    "HAS_MASK": lambda a: a["mask"] is not None,
    "USE_DOT": lambda a: min(a["BLOCK_Q"], a["BLOCK_T"], a["BLOCK_K"], a["BLOCK_D"]) >= 16,
}
_BWD_HEURISTICS = {**_HEURISTICS, "HAS_DPROB": lambda a: a["dprob"] is not None}


@triton.jit
def _scores(q, k, o_q, o_t, m_q, m_t, K, scale, s_qt, s_qk, s_kt, s_kk,
            USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
            BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """[BQ, BT] scores scale * q_i . k_j, summed over K in chunks of BLOCK_K."""
    s = tl.zeros([BLOCK_Q, BLOCK_T], dtype=CDT)
    for k0 in range(0, K, BLOCK_K):
        o_k = k0 + tl.arange(0, BLOCK_K)
        m_k = o_k < K
        b_q = tl.load(q + o_q[:, None] * s_qt + o_k[None, :] * s_qk, mask=m_q[:, None] & m_k[None, :], other=0.0)
        b_k = tl.load(k + o_t[:, None] * s_kt + o_k[None, :] * s_kk, mask=m_t[:, None] & m_k[None, :], other=0.0)
        s += mm(b_q, tl.trans(b_k), USE_DOT, CDT, DOT_DT, PRECISION)
    return s * scale


@triton.jit
def _key_block(q, k, mask, o_q, m_q, t0, T, n_valid, K, scale, mask_row, s_mt, s_qt, s_qk, s_kt, s_kk,
               HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr,
               DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """Key block from t0: offsets [BT], valid keys [BT] and scores [BQ, BT], -inf where masked."""
    o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
    m_t = key_valid(o_t, T, n_valid, mask, mask_row, s_mt, HAS_LENGTHS, HAS_MASK)
    s = _scores(q, k, o_q, o_t, m_q, m_t, K, scale, s_qt, s_qk, s_kt, s_kk,
                USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_K)
    return o_t, m_t, tl.where(m_t[None, :], s, float("-inf"))


@triton.autotune(configs=dot_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def dot_fwd(
    q, k, val, lengths, mask, out, lse, scores,  # pointers; lse [N, Tq], scores [N, Tq, T] contiguous
    Tq, T, K, D, scale, KEY_TQ, KEY_T, KEY_K, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qk, s_kn, s_kt, s_kk, s_vn, s_vt, s_vd, s_mn, s_mt, s_on, s_ot, s_od,
    NEED_WEIGHTS: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ), cdiv(D, BD)); online softmax over key blocks."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q, i_d = tl.program_id(1), tl.program_id(2)
    q, k, val, out, lse = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, out + i_n * s_on, lse + i_n * Tq
    o_q = i_q * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    m_q, m_d = o_q < Tq, o_d < D
    tq_w = tl.where(i_d == 0, Tq, 0)  # rows whose lse/scores this program writes: value block 0 only
    n_valid, hi = T, T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
        if not NEED_WEIGHTS:
            hi = tl.minimum(n_valid, T)
    m_i = tl.full([BLOCK_Q], float("-inf"), CDT)
    l_i = tl.zeros([BLOCK_Q], CDT)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], CDT)
    for t0 in range(0, hi, BLOCK_T):
        o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
        m_t = key_valid(o_t, T, n_valid, mask, i_n * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
        s = _scores(q, k, o_q, o_t, m_q, m_t, K, scale, s_qt, s_qk, s_kt, s_kk,
                    USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_K)
        s = tl.where(m_t[None, :], s, float("-inf"))  # [BQ, BT]
        if NEED_WEIGHTS:
            m_s = (o_q < tq_w)[:, None] & (o_t < T)[None, :]
            tl.store(scores + i_n * Tq * T + o_q[:, None] * T + o_t[None, :], s, mask=m_s)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        b_v = tl.load(val + o_t[:, None] * s_vt + o_d[None, :] * s_vd, mask=m_t[:, None] & m_d[None, :], other=0.0)
        acc = acc * alpha[:, None] + mm(p, b_v, USE_DOT, CDT, DOT_DT, PRECISION)
        m_i = m_new
    empty = l_i == 0.0
    acc = acc / tl.where(empty, 1.0, l_i)[:, None]
    tl.store(out + o_q[:, None] * s_ot + o_d[None, :] * s_od, acc.to(out.dtype.element_ty), mask=m_q[:, None] & m_d[None, :])
    b_lse = tl.where(empty, float("inf"), m_i + tl.log(tl.where(empty, 1.0, l_i)))
    tl.store(lse + o_q, b_lse, mask=o_q < tq_w)


@triton.autotune(configs=dot_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def dot_bwd_dq(
    q, k, val, lengths, mask, do, lse, delta, dprob, dq,  # delta [N, Tq] and dq [N, Tq, K] written, CDT
    Tq, T, K, D, scale, KEY_TQ, KEY_T, KEY_K, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qk, s_kn, s_kt, s_kk, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    NEED_DQ: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(Tq, BQ)): delta_i = sum_j p_ij dp_ij (always; the key-block kernel, run
    after this one, reads it) and, when NEED_DQ, dq_i = scale * sum_j ds_ij k_j."""
    i_n = tl.program_id(0).to(tl.int64)
    i_q = tl.program_id(1)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta, dq = lse + i_n * Tq, delta + i_n * Tq, dq + i_n * Tq * K
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
        o_t, m_t, s = _key_block(q, k, mask, o_q, m_q, t0, T, n_valid, K, scale, i_n * s_mn, s_mt,
                                 s_qt, s_qk, s_kt, s_kk, HAS_LENGTHS, HAS_MASK,
                                 USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_K)
        p, dp = dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd, s_vt, s_vd,
                       HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
        b_delta += tl.sum(p * dp, axis=1)
    tl.store(delta + o_q, b_delta, mask=m_q)
    if NEED_DQ:
        for k0 in range(0, K, BLOCK_K):
            o_k = k0 + tl.arange(0, BLOCK_K)
            tl.store(dq + o_q[:, None] * K + o_k[None, :], tl.zeros([BLOCK_Q, BLOCK_K], CDT), mask=m_q[:, None] & (o_k < K)[None, :])
        tl.debug_barrier()
        for t0 in range(0, hi, BLOCK_T):
            o_t, m_t, s = _key_block(q, k, mask, o_q, m_q, t0, T, n_valid, K, scale, i_n * s_mn, s_mt,
                                     s_qt, s_qk, s_kt, s_kk, HAS_LENGTHS, HAS_MASK,
                                     USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_K)
            p, ds = dscores(s, b_lse, b_delta, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd,
                            s_vt, s_vd, HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
            ds = ds * scale
            accumulate_product(dq, o_q, m_q, ds, k, o_t, m_t, s_kt, s_kk, K, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_K)


@triton.autotune(configs=dot_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.heuristics(_BWD_HEURISTICS)
@triton.jit(do_not_specialize=_KEY)
def dot_bwd_dkv(
    q, k, val, lengths, mask, do, lse, delta, dprob, dk, dval,  # outputs [N, T, K], [N, T, D] contiguous, CDT
    Tq, T, K, D, scale, KEY_TQ, KEY_T, KEY_K, KEY_D,  # KEY_*: the autotune key only
    s_qn, s_qt, s_qk, s_kn, s_kt, s_kk, s_vn, s_vt, s_vd, s_mn, s_mt, s_dn, s_dq, s_dd,
    CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, USE_DOT: tl.constexpr, HAS_DPROB: tl.constexpr,
):
    """Grid (N, cdiv(T, BT)): dk_j = scale * sum_i ds_ij q_i, dval_j = sum_i p_ij dO_i."""
    i_n = tl.program_id(0).to(tl.int64)
    i_t = tl.program_id(1)
    q, k, val, do = q + i_n * s_qn, k + i_n * s_kn, val + i_n * s_vn, do + i_n * s_dn
    lse, delta, dk, dval = lse + i_n * Tq, delta + i_n * Tq, dk + i_n * T * K, dval + i_n * T * D
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    n_valid = T
    if HAS_LENGTHS:
        n_valid = tl.load(lengths + i_n).to(tl.int32)
    m_t = key_valid(o_t, T, n_valid, mask, i_n * s_mn, s_mt, HAS_LENGTHS, HAS_MASK)
    m_tt = o_t < T
    for k0 in range(0, K, BLOCK_K):
        o_k = k0 + tl.arange(0, BLOCK_K)
        tl.store(dk + o_t[:, None] * K + o_k[None, :], tl.zeros([BLOCK_T, BLOCK_K], CDT), mask=m_tt[:, None] & (o_k < K)[None, :])
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
        s = _scores(q, k, o_q, o_t, m_q, m_t, K, scale, s_qt, s_qk, s_kt, s_kk,
                    USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_K)
        s = tl.where(m_t[None, :], s, float("-inf"))
        p, ds = dscores(s, b_lse, b_delta, o_q, o_t, m_q, m_t, do, val, dprob, i_n * Tq * T, D, T, s_dq, s_dd, s_vt, s_vd,
                        HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
        p_t, ds_t = tl.trans(p), tl.trans(ds * scale)  # [BT, BQ]
        accumulate_product(dval, o_t, m_tt, p_t, do, o_q, m_q, s_dq, s_dd, D, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_D)
        accumulate_product(dk, o_t, m_tt, ds_t, q, o_q, m_q, s_qt, s_qk, K, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_K)
