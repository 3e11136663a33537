"""The fused attention GRU decoder (one layer): the whole output-time loop in one launch, forward
and reverse-time backward. Each program owns BLOCK_B batch rows (their keys, states and all of
H), so the phases of a step meet at block barriers only, never across programs.

Layouts (acc = the accumulator dtype, fp32, or fp64 for fp64; gate order r, z, n):
  gx      (N, T, 3H) acc   x @ W_ix^T + b_ih + [b_hr, b_hz, 0]; the kernel adds c @ W_ic^T in place
  kp      (N, T_in, F)     the keys as the score sees them (W_k k + b_k, W_a k, or k)
  keys    (N, T_in, K)     the values the context sums
  v (F,), wq (F, H)        additive: the score vector and the query weight
  wic (3H, K), whh (3H, H), bhn (H,)
  q       (N, T, F) acc    each step's query (additive W_q h_{t-1}; dot h_t); saved
  ctx     (N, T, K) acc    each step's context; stats (N, 2, T) acc: score maximum and softmax sum
  sbuf    (N, T_in) acc    scratch: the current step's scores
  hbuf, hprev, gates, out: gru_forward.py's, with D = 1 (out (N, T, H))
A step, SCORE "additive" (Bahdanau): query (W_q h_{t-1}) | scores, stats | context |
gx_t += c_t W_ic^T | the GRU step (gru_forward's _fwd_step_block). SCORE "dot" (Luong, with
input feeding; "general" is dot over W_a-projected keys): gx_t += c_{t-1} W_ic^T | GRU step |
query (h_t) | scores | context. A bar between phases is a block barrier.

Backward, reverse time (gru_backward.py's layouts and phases, D = 1), plus
  dC (N, T, K) acc: the total gradient of each context (what the key-side attention backward,
  run after this kernel as its own launches, takes as d_out); dQ (N, T, F) acc: each query's.
  pbuf, dpbuf (N, T_in) acc: scratch, the step's probabilities and their gradients.
  additive: gates | carry, dC_t = dctx_t + dgx_t W_ic | dp, delta | dq | dh_{t-1} += dq W_q
  dot:      dC_t = dctx_t + dgx_{t+1} W_ic | dp, delta | dq | dh_t += dq | gates | carry
The probabilities are recomputed from the saved query, keys and (m, l) as exp(s - m) / l.
exp and / are activations.py's exp and div: in fp32 the compiled tl.exp and / are approximate
(ex2.approx, div.full), which the fp32 contract cannot afford; FAST (MMA_LOWP, bf16/fp16) takes them.
"""

import triton
import triton.language as tl

from .activations import div, exp, tanh, tanh_and_grad
from .gru_backward import _bwd_carry_block, _bwd_gates_block
from .gru_common import state_matmul
from .gru_forward import _fwd_step_block


# ------------------------------------------------------------------------------ row phases


@triton.jit
def _rows(i_b, N, BLOCK_B: tl.constexpr):
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    return o_b, o_b < N


@triton.jit
def _rows_matmul(p_src, s_src, p_w, s_wk, s_wm, p_add, s_add, p_dst, s_dst, i_b, N, K, M,
                 HAS_ADD: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """dst[rows, :M] = add[rows, :M] (HAS_ADD) + src[rows, :K] @ W, W[k, m] at p_w + k s_wk + m s_wm;
    rows at strides s_src, s_add, s_dst (elements contiguous along a row). K may be 0."""
    o_b, m_b = _rows(i_b, N, BLOCK_B)
    for m0 in range(0, M, BLOCK_M):
        o_m = m0 + tl.arange(0, BLOCK_M)
        m_m = o_m < M
        acc = tl.zeros((BLOCK_B, BLOCK_M), dtype=p_dst.dtype.element_ty)
        acc = state_matmul(p_src + o_b[:, None] * s_src, m_b, p_w + o_m[None, :] * s_wm, s_wk, m_m, K, acc,
                           MMA_LOWP, DOT_PRECISION, BLOCK_K)
        m = m_b[:, None] & m_m[None, :]
        if HAS_ADD:
            acc += tl.load(p_add + o_b[:, None] * s_add + o_m[None, :], mask=m, other=0.0).to(acc.dtype)
        tl.store(p_dst + o_b[:, None] * s_dst + o_m[None, :], acc, mask=m)


@triton.jit
def _rows_copy(p_src, s_src, p_dst, s_dst, i_b, N, M, ACCUMULATE: tl.constexpr, BLOCK_B: tl.constexpr,
               BLOCK_M: tl.constexpr):
    """dst[rows, :M] (+)= src[rows, :M]."""
    o_b, m_b = _rows(i_b, N, BLOCK_B)
    for m0 in range(0, M, BLOCK_M):
        o_m = m0 + tl.arange(0, BLOCK_M)
        m = m_b[:, None] & (o_m < M)[None, :]
        val = tl.load(p_src + o_b[:, None] * s_src + o_m[None, :], mask=m, other=0.0).to(p_dst.dtype.element_ty)
        if ACCUMULATE:
            val += tl.load(p_dst + o_b[:, None] * s_dst + o_m[None, :], mask=m, other=0.0)
        tl.store(p_dst + o_b[:, None] * s_dst + o_m[None, :], val, mask=m)


# ------------------------------------------------------------------------------ attention of one step


@triton.jit
def _key_mask(klen, kmask, o_b, m_b, o_t, T_in, s_mn, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr):
    """[BB, BT] bool: key o_t of row o_b takes part (in range, under its length, not masked)."""
    valid = m_b[:, None] & (o_t < T_in)[None, :]
    if HAS_LENGTHS:
        valid = valid & (o_t[None, :] < tl.load(klen + o_b, mask=m_b, other=0)[:, None])
    if HAS_MASK:
        ignore = tl.load(kmask + o_b[:, None] * s_mn + o_t[None, :], mask=valid, other=1)
        valid = valid & (ignore == 0)
    return valid


@triton.jit
def _key_tile(kp, o_b, o_t, valid, o_f, m_f, s_kn, s_kt, CDT: tl.constexpr):
    """kp[rows, keys o_t, features o_f] [BB, BT, BF] (zero where masked)."""
    p = kp + o_b[:, None, None] * s_kn + o_t[None, :, None] * s_kt + o_f[None, None, :]
    return tl.load(p, mask=valid[:, :, None] & m_f[None, None, :], other=0.0).to(CDT)


@triton.jit
def _scores(p_q, kp, v, o_b, m_b, o_t, valid, F, s_kn, s_kt, SCORE: tl.constexpr, CDT: tl.constexpr,
            FAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    """[BB, BT] scores of the queries at p_q ([BB, 1] row pointers, F features) against the
    keys o_t, -inf where a key does not take part: v . tanh(q + kp_j) or q . kp_j."""
    s = tl.zeros([BLOCK_B, BLOCK_T], CDT)
    for f0 in range(0, F, BLOCK_F):
        o_f = f0 + tl.arange(0, BLOCK_F)
        m_f = o_f < F
        b_q = tl.load(p_q + o_f[None, :], mask=m_b[:, None] & m_f[None, :], other=0.0).to(CDT)  # [BB, BF]
        b_k = _key_tile(kp, o_b, o_t, valid, o_f, m_f, s_kn, s_kt, CDT)  # [BB, BT, BF]
        if SCORE == "additive":
            b_v = tl.load(v + o_f, mask=m_f, other=0.0).to(CDT)
            s += tl.sum(tanh(b_q[:, None, :] + b_k, FAST) * b_v[None, None, :], axis=2)
        else:
            s += tl.sum(b_q[:, None, :] * b_k, axis=2)
    return tl.where(valid, s, float("-inf"))


@triton.jit
def _row_stats(stats, o_b, m_b, s, T):
    """(m, l) of step s for the rows: stats (N, 2, T)."""
    p = stats + o_b * 2 * T + s
    return tl.load(p, mask=m_b, other=0.0), tl.load(p + T, mask=m_b, other=1.0)


@triton.jit
def _attend(q, kp, keys, v, klen, kmask, ctx, stats, sbuf, weights, i_b, s, N, T, T_in, F, K,
            s_kpn, s_kpt, s_kn, s_kt, s_mn,
            SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, NEED_WEIGHTS: tl.constexpr,
            CDT: tl.constexpr, FAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr,
            BLOCK_C: tl.constexpr):
    """Step s's attention for the rows, from the query q[:, s]: the scores once (into sbuf) with
    their running maximum and sum, then the context c[:, s] = sum_j p_j k_j, p = exp(s - m) / l,
    BLOCK_C context columns at a time (and the weights, NEED_WEIGHTS)."""
    o_b, m_b = _rows(i_b, N, BLOCK_B)
    p_q = q + (o_b[:, None] * T + s) * F
    m_i = tl.full([BLOCK_B], float("-inf"), CDT)
    l_i = tl.zeros([BLOCK_B], CDT)
    for t0 in range(0, T_in, BLOCK_T):
        o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
        valid = _key_mask(klen, kmask, o_b, m_b, o_t, T_in, s_mn, HAS_LENGTHS, HAS_MASK)
        sc = _scores(p_q, kp, v, o_b, m_b, o_t, valid, F, s_kpn, s_kpt, SCORE, CDT, FAST, BLOCK_B, BLOCK_T, BLOCK_F)
        tl.store(sbuf + o_b[:, None] * T_in + o_t[None, :], sc, mask=m_b[:, None] & (o_t < T_in)[None, :])
        m_new = tl.maximum(m_i, tl.max(sc, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no (-inf) - (-inf) in a masked row
        l_i = l_i * exp(m_i - m_safe, FAST) + tl.sum(exp(sc - m_safe[:, None], FAST), axis=1)
        m_i = m_new
    empty = l_i == 0.0  # fully masked row: m = 0, l = 1, every p = 0, a zero context
    m_i = tl.where(empty, 0.0, m_i)
    l_i = tl.where(empty, 1.0, l_i)
    tl.store(stats + o_b * 2 * T + s, m_i, mask=m_b)
    tl.store(stats + o_b * 2 * T + T + s, l_i, mask=m_b)
    tl.debug_barrier()  # sbuf written by every thread before any reads it back
    for c0 in range(0, K, BLOCK_C):
        o_c = c0 + tl.arange(0, BLOCK_C)
        m_c = o_c < K
        acc = tl.zeros([BLOCK_B, BLOCK_C], CDT)
        for t0 in range(0, T_in, BLOCK_T):
            o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
            m_bt = m_b[:, None] & (o_t < T_in)[None, :]
            sc = tl.load(sbuf + o_b[:, None] * T_in + o_t[None, :], mask=m_bt, other=float("-inf"))
            p = div(exp(sc - m_i[:, None], FAST), l_i[:, None], FAST)  # [BB, BT], 0 where masked
            if NEED_WEIGHTS:
                tl.store(weights + (o_b[:, None] * T + s) * T_in + o_t[None, :], p, mask=m_bt & (c0 == 0))
            b_k = _key_tile(keys, o_b, o_t, m_bt, o_c, m_c, s_kn, s_kt, CDT)  # [BB, BT, BC]
            acc += tl.sum(p[:, :, None] * b_k, axis=1)
        tl.store(ctx + (o_b[:, None] * T + s) * K + o_c[None, :], acc, mask=m_b[:, None] & m_c[None, :])


@triton.jit
def _attend_bwd(q, kp, keys, v, klen, kmask, stats, dC, dweights, dQ, pbuf, dpbuf, i_b, s, N, T, T_in, F, K,
                s_kpn, s_kpt, s_kn, s_kt, s_mn,
                SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DPROB: tl.constexpr,
                CDT: tl.constexpr, FAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr,
                BLOCK_C: tl.constexpr):
    """Step s's query gradient dQ[:, s] from the context's dC[:, s] (and the weights' dweights):
    p recomputed, dp_j = dc . k_j (+ dweights), delta = sum_j p dp, ds = p (dp - delta), then
    dq = sum_j ds_j d s_j / d q: v * tanh'(q + kp_j) (additive) or kp_j (dot)."""
    o_b, m_b = _rows(i_b, N, BLOCK_B)
    p_q = q + (o_b[:, None] * T + s) * F
    b_m, b_l = _row_stats(stats, o_b, m_b, s, T)
    delta = tl.zeros([BLOCK_B], CDT)
    for t0 in range(0, T_in, BLOCK_T):
        o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
        valid = _key_mask(klen, kmask, o_b, m_b, o_t, T_in, s_mn, HAS_LENGTHS, HAS_MASK)
        sc = _scores(p_q, kp, v, o_b, m_b, o_t, valid, F, s_kpn, s_kpt, SCORE, CDT, FAST, BLOCK_B, BLOCK_T, BLOCK_F)
        p = div(exp(sc - b_m[:, None], FAST), b_l[:, None], FAST)
        dp = tl.zeros([BLOCK_B, BLOCK_T], CDT)
        for c0 in range(0, K, BLOCK_C):
            o_c = c0 + tl.arange(0, BLOCK_C)
            m_c = o_c < K
            b_dc = tl.load(dC + (o_b[:, None] * T + s) * K + o_c[None, :], mask=m_b[:, None] & m_c[None, :], other=0.0)
            dp += tl.sum(b_dc.to(CDT)[:, None, :] * _key_tile(keys, o_b, o_t, valid, o_c, m_c, s_kn, s_kt, CDT), axis=2)
        m_bt = m_b[:, None] & (o_t < T_in)[None, :]
        if HAS_DPROB:
            dp += tl.load(dweights + (o_b[:, None] * T + s) * T_in + o_t[None, :], mask=valid, other=0.0).to(CDT)
        dp = tl.where(valid, dp, 0.0)
        delta += tl.sum(p * dp, axis=1)
        tl.store(pbuf + o_b[:, None] * T_in + o_t[None, :], p, mask=m_bt)
        tl.store(dpbuf + o_b[:, None] * T_in + o_t[None, :], dp, mask=m_bt)
    tl.debug_barrier()  # p and dp of every key written before the dq pass reads them
    for f0 in range(0, F, BLOCK_F):
        o_f = f0 + tl.arange(0, BLOCK_F)
        m_f = o_f < F
        b_q = tl.load(p_q + o_f[None, :], mask=m_b[:, None] & m_f[None, :], other=0.0).to(CDT)
        acc = tl.zeros([BLOCK_B, BLOCK_F], CDT)
        for t0 in range(0, T_in, BLOCK_T):
            o_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
            m_bt = m_b[:, None] & (o_t < T_in)[None, :]
            p = tl.load(pbuf + o_b[:, None] * T_in + o_t[None, :], mask=m_bt, other=0.0)
            dp = tl.load(dpbuf + o_b[:, None] * T_in + o_t[None, :], mask=m_bt, other=0.0)
            ds = p * (dp - delta[:, None])  # [BB, BT]
            b_k = _key_tile(kp, o_b, o_t, m_bt, o_f, m_f, s_kpn, s_kpt, CDT)  # [BB, BT, BF]
            if SCORE == "additive":
                _, g = tanh_and_grad(b_q[:, None, :] + b_k, FAST)
                acc += tl.sum(ds[:, :, None] * g, axis=1)
            else:
                acc += tl.sum(ds[:, :, None] * b_k, axis=1)
        if SCORE == "additive":
            acc = acc * tl.load(v + o_f, mask=m_f, other=0.0).to(CDT)[None, :]
        tl.store(dQ + (o_b[:, None] * T + s) * F + o_f[None, :], acc, mask=m_b[:, None] & m_f[None, :])


# ------------------------------------------------------------------------------ the kernels


@triton.jit
def _gru_step(gx, whh, bhn, steps, hbuf, out, hprev, gates, i_b, s, T, N, H,
              HAS_BHN: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
              BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """The GRU step of the rows (the layer kernels' own step, D = 1, gx and out batch first)."""
    for i_n in range(tl.cdiv(H, BLOCK_H)):
        _fwd_step_block(gx, whh, bhn, steps, hbuf, out, hprev, gates, i_b, i_n, 0, s, s % 2, T, N, H, 1,
                        3 * H, T * 3 * H, H, T * H, HAS_BHN, SAVE, True, MMA_LOWP, DOT_PRECISION,
                        BLOCK_B, BLOCK_H, BLOCK_K)


@triton.jit
def decoder_fwd_kernel(
    gx, whh, bhn, steps, hbuf, out, hprev, gates,  # the GRU's (gru_forward.py, D = 1); steps (N,) = T
    wq, wic, kp, keys, v, klen, kmask, q, ctx, stats, sbuf, weights,
    T, N, H, T_in, F, K, s_kpn, s_kpt, s_kn, s_kt, s_mn,
    SCORE: tl.constexpr, HAS_BHN: tl.constexpr, SAVE: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_MASK: tl.constexpr, NEED_WEIGHTS: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_F: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Grid (batch blocks,): the whole teacher-forced loop of the rows (phases: module docstring)."""
    i_b = tl.program_id(0)
    CDT = hbuf.dtype.element_ty
    for s in range(T):
        cur = s % 2
        p_h = hbuf + cur * N * H  # h_{t-1}
        if SCORE == "additive":
            _rows_matmul(p_h, H, wq, 1, H, q, 0, q + s * F, T * F, i_b, N, H, F,
                         False, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
            tl.debug_barrier()
            _attend(q, kp, keys, v, klen, kmask, ctx, stats, sbuf, weights, i_b, s, N, T, T_in, F, K,
                    s_kpn, s_kpt, s_kn, s_kt, s_mn, SCORE, HAS_LENGTHS, HAS_MASK, NEED_WEIGHTS, CDT, MMA_LOWP,
                    BLOCK_B, BLOCK_T, BLOCK_F, BLOCK_C)
            tl.debug_barrier()
            _rows_matmul(ctx + s * K, T * K, wic, 1, K, gx + s * 3 * H, T * 3 * H, gx + s * 3 * H, T * 3 * H,
                         i_b, N, K, 3 * H, True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
        else:  # c_{t-1} joins the step (none before the first)
            prev = tl.maximum(s - 1, 0)
            _rows_matmul(ctx + prev * K, T * K, wic, 1, K, gx + s * 3 * H, T * 3 * H, gx + s * 3 * H, T * 3 * H,
                         i_b, N, tl.where(s > 0, K, 0), 3 * H, True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
        tl.debug_barrier()
        _gru_step(gx, whh, bhn, steps, hbuf, out, hprev, gates, i_b, s, T, N, H,
                  HAS_BHN, SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
        tl.debug_barrier()
        if SCORE == "dot":
            _rows_copy(hbuf + (1 - cur) * N * H, H, q + s * F, T * F, i_b, N, H, False, BLOCK_B, BLOCK_H)  # h_t
            tl.debug_barrier()
            _attend(q, kp, keys, v, klen, kmask, ctx, stats, sbuf, weights, i_b, s, N, T, T_in, F, K,
                    s_kpn, s_kpt, s_kn, s_kt, s_mn, SCORE, HAS_LENGTHS, HAS_MASK, NEED_WEIGHTS, CDT, MMA_LOWP,
                    BLOCK_B, BLOCK_T, BLOCK_F, BLOCK_C)
            tl.debug_barrier()


@triton.jit
def decoder_bwd_kernel(
    dout, whh, steps, dbuf, hprev, gates, dgx, dgh,  # the GRU's (gru_backward.py, D = 1)
    dctx, dweights, wq, wic, kp, keys, v, klen, kmask, q, stats, dC, dQ, pbuf, dpbuf,
    T, N, H, T_in, F, K, s_kpn, s_kpt, s_kn, s_kt, s_mn,
    SCORE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DPROB: tl.constexpr,
    MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_F: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Grid (batch blocks,): the reverse-time loop (phases: module docstring)."""
    i_b = tl.program_id(0)
    CDT = dbuf.dtype.element_ty
    n_blocks = tl.cdiv(H, BLOCK_H)
    for step in range(T):
        s = T - 1 - step
        cur = step % 2
        if SCORE == "dot":
            # c_t's gradient: its own output's, plus what step t + 1's input took from it.
            nxt = tl.minimum(s + 1, T - 1)
            _rows_matmul(dgx + nxt * 3 * H, T * 3 * H, wic, K, 1, dctx + s * K, T * K, dC + s * K, T * K, i_b, N,
                         tl.where(s + 1 < T, 3 * H, 0), K, True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
            tl.debug_barrier()
            _attend_bwd(q, kp, keys, v, klen, kmask, stats, dC, dweights, dQ, pbuf, dpbuf, i_b, s, N, T, T_in, F, K,
                        s_kpn, s_kpt, s_kn, s_kt, s_mn, SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB, CDT, MMA_LOWP,
                        BLOCK_B, BLOCK_T, BLOCK_F, BLOCK_C)
            tl.debug_barrier()
            _rows_copy(dQ + s * F, T * F, dbuf + cur * N * H, H, i_b, N, H, True, BLOCK_B, BLOCK_H)  # the query was h_t
            tl.debug_barrier()
        for i_n in range(n_blocks):
            _bwd_gates_block(dout, steps, dbuf, hprev, gates, dgx, dgh, i_b, i_n, 0, s, cur, T, N, H, 1,
                             H, T * H, 3 * H, T * 3 * H, True, BLOCK_B, BLOCK_H)
        tl.debug_barrier()
        for i_n in range(n_blocks):
            _bwd_carry_block(dout, whh, steps, dbuf, gates, dgh, i_b, i_n, 0, s, cur, T, N, H, 1, H, T * H,
                             True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
        if SCORE == "additive":
            _rows_matmul(dgx + s * 3 * H, T * 3 * H, wic, K, 1, dctx + s * K, T * K, dC + s * K, T * K, i_b, N,
                         3 * H, K, True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
            tl.debug_barrier()
            _attend_bwd(q, kp, keys, v, klen, kmask, stats, dC, dweights, dQ, pbuf, dpbuf, i_b, s, N, T, T_in, F, K,
                        s_kpn, s_kpt, s_kn, s_kt, s_mn, SCORE, HAS_LENGTHS, HAS_MASK, HAS_DPROB, CDT, MMA_LOWP,
                        BLOCK_B, BLOCK_T, BLOCK_F, BLOCK_C)
            tl.debug_barrier()
            p_next = dbuf + (1 - cur) * N * H  # dh_{t-1} += dq W_q
            _rows_matmul(dQ + s * F, T * F, wq, H, 1, p_next, H, p_next, H, i_b, N, F, H,
                         True, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K)
        tl.debug_barrier()
