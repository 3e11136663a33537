"""Launchers of the fused attention GRU decoder (kernels/decoder.py): one launch for the whole
teacher-forced loop, one for its reverse-time backward, then the GEMMs and the attention
kernels' key-side backward.

  forward   (in the kernel, per step) query, scores, softmax, context, gx_t += c W_ic^T, GRU step
  backward  (in the kernel, reverse time) gate gradients, dh carry, the contexts' and queries'
            gradients; then dW_hh = dgh^T h_prev, dW_ic = dgx^T c_in, dW_q = dQ^T h_prev, and
            the keys' gradients (as values and through the score) by attention_backward over
            every step at once, recomputing the scores from the saved queries and (m, l).

Saved for backward, in the accumulator dtype: h_prev (T, N, H), gates (T, N, 4H), each step's
query (N, T, F), context (N, T, K) and score maximum and sum (N, 2, T).
"""

from __future__ import annotations

import torch

from .. import gpu
from .alloc import new_empty
from .attention import attention_backward
from .gru_layer import _layer_dot_options, acc_dtype
from .launch import launch, resources
from .loader import kernels
from .plan import _pow2, plan_gru

DECODER_SCORES = ("additive", "dot")


def _attention_blocks(device, B_block: int, T_in: int, F: int, K: int) -> dict:
    """The attention phases' tiles: under the interpreter each dimension in one block (fewer
    interpreted iterations); on a GPU a [BLOCK_B, BLOCK_T, BLOCK_F] register tile of 2048
    elements (16 a thread with 4 warps, the additive kernels' own bound)."""
    if not gpu.on_gpu(device):
        return dict(BLOCK_T=min(_pow2(T_in), 64), BLOCK_F=min(_pow2(F), 64), BLOCK_C=min(_pow2(K), 64))
    inner = max(2048 // (B_block * 16), 4)
    return dict(BLOCK_T=16, BLOCK_F=inner, BLOCK_C=inner)


def _masks(lengths, mask):
    """(klen, kmask as uint8, the mask's row stride, constexprs)."""
    kmask = None if mask is None else mask.view(torch.uint8)
    return lengths, kmask, 0 if mask is None else mask.stride(0), dict(HAS_LENGTHS=lengths is not None,
                                                                      HAS_MASK=mask is not None)


def _plan(N, H, device, dtype, job):
    return plan_gru(N, H, 1, device, "rows", dtype, resources=lambda p: resources(*job(p)))


def decoder_forward(gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score, need_weights, save):
    """Returns (out (N, T, H), ctx (N, T, K) acc, weights (N, T, T_in) acc or None, h_n (N, H),
    (h_prev, gates, q, stats) when ``save``)."""
    dec = kernels("decoder")
    N, T, H3 = gx.shape
    H, (T_in, K), F = H3 // 3, keys.shape[1:], kp.shape[-1]
    acc, dev = acc_dtype(keys.dtype), keys.device
    gxa = gx.to(acc, copy=True)  # the kernel adds the context's projection into it
    out = new_empty((N, T, H), keys.dtype, dev)
    hbuf = new_empty((2, 1, N, H), acc, dev)
    hbuf[0, 0].copy_(h0)
    ctx, q, stats = new_empty((N, T, K), acc, dev), new_empty((N, T, F), acc, dev), new_empty((N, 2, T), acc, dev)
    sbuf = new_empty((N, T_in), acc, dev)
    weights = new_empty((N, T, T_in), acc, dev) if need_weights else None
    hprev, gates = (new_empty((1, T, N, H), acc, dev), new_empty((1, T, N, 4 * H), acc, dev)) if save else (hbuf, hbuf)
    steps = torch.full((N,), T, dtype=torch.int64, device=dev)
    klen, kmask, s_mn, flags = _masks(lengths, mask)
    has_bhn = bhn is not None

    def job(plan):
        meta = dict(SCORE=score, HAS_BHN=has_bhn, SAVE=save, NEED_WEIGHTS=need_weights, **flags,
                    **_layer_dot_options(whh), **plan.blocks(), **_attention_blocks(dev, plan.block_b, T_in, F, K),
                    num_warps=plan.num_warps)
        args = [gxa, whh, bhn if has_bhn else hbuf, steps, hbuf, out, hprev, gates,
                wq if wq is not None else hbuf, wic, kp, keys, v if v is not None else hbuf, klen, kmask, q, ctx,
                stats, sbuf, weights, T, N, H, T_in, F, K, kp.stride(0), kp.stride(1), keys.stride(0), keys.stride(1),
                s_mn]
        return dec.decoder_fwd_kernel, (plan.batch_blocks,), args, meta

    launch(*job(_plan(N, H, dev, whh.dtype, job)))
    h_n = hbuf[T % 2, 0].to(keys.dtype, copy=True)
    return out, ctx, weights, h_n, (hprev, gates, q, stats)


def decoder_backward(dout, dctx, dweights, dh_n, keys, kp, v, wq, wic, whh, lengths, mask, ctx, hprev, gates, q,
                     stats, score):
    """Returns (dgx (N, T, 3H) acc, dkeys (as values), dkp, dv or None, dwq or None, dwic, dwhh,
    db_hn, dh0)."""
    dec = kernels("decoder")
    N, T, H = dout.shape
    (T_in, K), F = keys.shape[1:], kp.shape[-1]
    acc, dev = gates.dtype, keys.device
    dbuf = new_empty((2, 1, N, H), acc, dev)
    dbuf[0, 0].copy_(dh_n)
    dgx, dgh = new_empty((N, T, 3 * H), acc, dev), new_empty((1, T, N, 3 * H), acc, dev)
    dC, dQ = new_empty((N, T, K), acc, dev), new_empty((N, T, F), acc, dev)
    pbuf, dpbuf = new_empty((N, T_in), acc, dev), new_empty((N, T_in), acc, dev)
    steps = torch.full((N,), T, dtype=torch.int64, device=dev)
    klen, kmask, s_mn, flags = _masks(lengths, mask)
    dprob = None if dweights is None else dweights.contiguous()

    def job(plan):
        meta = dict(SCORE=score, HAS_DPROB=dprob is not None, **flags, **_layer_dot_options(whh), **plan.blocks(),
                    **_attention_blocks(dev, plan.block_b, T_in, F, K), num_warps=plan.num_warps)
        args = [dout, whh, steps, dbuf, hprev, gates, dgx, dgh, dctx, dprob, wq if wq is not None else dbuf, wic, kp,
                keys, v if v is not None else dbuf, klen, kmask, q, stats, dC, dQ, pbuf, dpbuf,
                T, N, H, T_in, F, K, kp.stride(0), kp.stride(1), keys.stride(0), keys.stride(1), s_mn]
        return dec.decoder_bwd_kernel, (plan.batch_blocks,), args, meta

    launch(*job(_plan(N, H, dev, whh.dtype, job)))
    dh0 = dbuf[T % 2, 0].to(keys.dtype)

    # The keys' side of every step's attention at once (scores recomputed from the saved queries).
    _, dkp, dv, dkeys = attention_backward(score, q, kp, v, keys, lengths, mask, 1.0, stats, dC, dprob, False)
    flat_dgx = dgx.reshape(N * T, 3 * H)
    c_in = ctx if score == "additive" else torch.cat([ctx.new_zeros(N, 1, K), ctx[:, :-1]], dim=1)
    dwic = (flat_dgx.t() @ c_in.reshape(N * T, K)).to(wic.dtype)
    h_prev = hprev.reshape(T * N, H)
    dwhh = (dgh.reshape(T * N, 3 * H).t() @ h_prev).to(whh.dtype)
    dbhn = dgh[..., 2 * H:].sum(dim=(0, 1, 2)).to(whh.dtype)
    dwq = None
    if score == "additive":
        dwq = (dQ.transpose(0, 1).reshape(T * N, F).t() @ h_prev).to(wq.dtype)
    return dgx, dkeys.to(keys.dtype), dkp.to(kp.dtype), (None if dv is None else dv.to(v.dtype)), dwq, dwic, dwhh, \
        dbhn, dh0
