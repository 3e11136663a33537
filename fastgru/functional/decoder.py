"""Public functions of the attention decoder: ``attention_decoder`` (teacher forcing over a whole
target sequence), ``decoder_state`` and ``attention_decoder_step`` (one token at a time).

The equations are fastgru.reference's (``attention_decoder``): "additive" (Bahdanau) attends
with h_{t-1} and feeds the context into the step; "dot" / "general" (Luong) attend with h_t,
and with ``input_feeding`` feed c_{t-1} into the next step. ``layers`` holds (w_ih, w_hh, b_ih,
b_hh) per layer; layer 0's w_ih is (3H, I + K) when the context joins the input ([x_t, c]).

Every input is checked here, before any kernel runs. Which implementation runs, by backend and
shape:
  kernels ("triton", "interpret"), one layer, additive or input feeding: the fused decoder
      (fastgru::decoder_fwd): the key projection is one GEMM, the input projection one GEMM,
      and the whole output-time loop (query projection, scores, masked softmax, context, the
      context's projection and the GRU step) one launch; its backward one reverse-time launch,
      then GEMMs and the attention kernels' key-side backward.
  kernels, Luong without input feeding: nothing couples the steps but the GRU, so the GRU
      layer kernels run the whole sequence and one attention call attends every step at once.
  kernels, a deeper coupled stack: step by step, the fused GRU cell per layer and the fused
      attention kernel per step.
  "torch" (CPU default) and "reference": the reference loop in PyTorch ops ("torch" with
      PyTorch's own GRU cell operator).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from .. import reference
from ..backend import backend_for
from ..ops.attention import attention_op
from ..ops.decoder import decoder_op
from ..ops.gru_cell import gru_cell_op
from ..ops.guard import autocast_entry
from .attention import _masks, _same, _tensor, dot_attention
from .recurrent import gru

__all__ = ["DecoderState", "attention_decoder", "attention_decoder_step", "decoder_state"]

SCORES = reference.DECODER_SCORES


class DecoderState(NamedTuple):
    """What one decoding step carries: the states ``h`` (L, N, H), the last context ``context``
    (N, K) (zeros before the first step), the keys (N, T_in, K) and their projection for the
    score (N, T_in, F), and the key masks (``lengths`` (N,) int64 or None, ``key_padding_mask``
    (N, T_in) bool or None). Fixed shapes, no host synchronisation: a step can be captured in a
    CUDA graph."""

    h: torch.Tensor
    context: torch.Tensor
    keys: torch.Tensor
    projected_keys: torch.Tensor
    lengths: Optional[torch.Tensor]
    key_padding_mask: Optional[torch.Tensor]


# ------------------------------------------------------------------------------ checks


def _score(score):
    if score not in SCORES:
        raise ValueError(f"attention must be one of {SCORES}, got {score!r}")
    return score


def _feeds(score, input_feeding):
    """True when the context joins the GRU's input (additive always; Luong with input feeding)."""
    if not isinstance(input_feeding, bool):
        raise TypeError(f"input_feeding must be a bool, got {type(input_feeding).__name__}")
    if score == "additive" and input_feeding:
        raise ValueError("input_feeding applies to Luong's dot/general attention: additive attention already "
                         "feeds its context into the step it attends for")
    return score == "additive" or input_feeding


def _check_layers(layers, I, K, feeds, ref):
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError("layers must be a non-empty list of (w_ih, w_hh, b_ih, b_hh), one per layer")
    H = layers[0][1].shape[1]
    for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        width = (I + K if feeds else I) if l == 0 else H
        if tuple(w_ih.shape) != (3 * H, width):
            what = "input_size + key_size" if l == 0 and feeds else ("input_size" if l == 0 else "hidden_size")
            raise ValueError(f"layers[{l}] w_ih must have shape ({3 * H}, {width}) (3 * hidden_size, {what}), "
                             f"got {tuple(w_ih.shape)}")
        if tuple(w_hh.shape) != (3 * H, H):
            raise ValueError(f"layers[{l}] w_hh must have shape ({3 * H}, {H}), got {tuple(w_hh.shape)}")
        for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
            if b is not None and tuple(b.shape) != (3 * H,):
                raise ValueError(f"layers[{l}] {name} must have shape ({3 * H},), got {tuple(b.shape)}")
        _same(ref, "keys", w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    return H


def _check_attention(score, H, K, query_weight, key_weight, key_bias, v, ref, query_side=True):
    """The score's parameters: additive query_weight (A, H), key_weight (A, K), key_bias (A,) or
    None, v (A,); general key_weight (H, K); dot none (and K == H). ``query_side`` False: the
    key side only (what projecting the keys needs)."""
    if score == "dot":
        if K != H:
            raise ValueError(f"dot attention scores h . k: key_size ({K}) must equal hidden_size ({H}); use 'general'")
        return
    if not isinstance(key_weight, torch.Tensor):
        raise TypeError(f"key_weight must be a tensor for {score!r} attention, got {type(key_weight).__name__}")
    A = key_weight.shape[0] if score == "additive" else H
    if tuple(key_weight.shape) != (A, K):
        raise ValueError(f"key_weight must have shape ({A}, {K}), got {tuple(key_weight.shape)}")
    if key_bias is not None and tuple(key_bias.shape) != (A,):
        raise ValueError(f"key_bias must have shape ({A},), got {tuple(key_bias.shape)}")
    if score == "additive" and query_side:
        for name, t, shape in (("query_weight", query_weight, (A, H)), ("v", v, (A,))):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                raise ValueError(f"{name} must be a tensor of shape {shape}, got {getattr(t, 'shape', t)}")
    _same(ref, "keys", key_weight=key_weight, key_bias=key_bias, query_weight=query_weight, v=v)


def _check_h(h0, L, N, H, ref):
    if h0 is None:
        return ref.new_zeros(L, N, H)
    if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (L, N, H):
        raise ValueError(f"h0 must have shape ({L}, {N}, {H}) (num_layers, batch, hidden_size), got "
                         f"{tuple(getattr(h0, 'shape', ()))}")
    _same(ref, "keys", h0=h0)
    return h0


# ------------------------------------------------------------------------------ functions


@autocast_entry
def attention_decoder(inputs, keys, h0, layers, *, attention="additive", query_weight=None, key_weight=None,
                      key_bias=None, v=None, key_lengths=None, key_padding_mask=None, input_feeding=False,
                      need_weights=False):
    """Teacher-forced attention decoder over inputs (N, T_out, I) and encoder outputs keys
    (N, T_in, K) from states h0 (L, N, H) (None: zeros). Masks: ``key_lengths`` (N,) (key j of
    row n takes part when j < key_lengths[n]) and/or ``key_padding_mask`` (N, T_in) (True =
    ignore). Returns (outputs (N, T_out, H), contexts (N, T_out, K), weights (N, T_out, T_in)
    or None, h_n (L, N, H))."""
    score = _score(attention)
    feeds = _feeds(score, input_feeding)
    _tensor(inputs, "inputs", (3,), "(N, T_out, input_size)")
    _tensor(keys, "keys", (3,), "(N, T_in, key_size)")
    _same(keys, "keys", inputs=inputs)
    N, T_in, K = keys.shape
    if inputs.shape[0] != N:
        raise ValueError(f"inputs have batch size {inputs.shape[0]} but keys have {N}")
    H = _check_layers(layers, inputs.shape[-1], K, feeds, keys)
    _check_attention(score, H, K, query_weight, key_weight, key_bias, v, keys)
    h0 = _check_h(h0, len(layers), N, H, keys)
    lengths, mask = _masks(key_lengths, key_padding_mask, N, T_in, keys.device)
    need_weights = bool(need_weights)

    which = backend_for(inputs, keys)
    if which not in ("triton", "interpret"):
        cell = torch.gru_cell if which == "torch" else reference.gru_cell
        out, ctx, weights, h_n = reference.attention_decoder(
            inputs, keys, h0, layers, score, query_weight=query_weight, key_weight=key_weight, key_bias=key_bias, v=v,
            lengths=lengths, key_padding_mask=mask, input_feeding=input_feeding, cell=cell)
    elif not feeds:
        out, ctx, weights, h_n = _luong_unfed(inputs, keys, h0, layers, score, key_weight, lengths, mask, need_weights)
    elif len(layers) == 1:
        out, ctx, weights, h_n = _fused(inputs, keys, h0, layers[0], score, query_weight, key_weight, key_bias, v,
                                        lengths, mask, need_weights)
    else:
        kp = reference.decoder_keys(score, keys, key_weight, key_bias)
        out, ctx, weights, h_n = reference.attention_decoder(
            inputs, keys, h0, layers, score, input_feeding=input_feeding, cell=gru_cell_op,
            attend=_kernel_attend(score, keys, kp, query_weight, v, lengths, mask, need_weights))
    return out, ctx, (weights if need_weights else None), h_n


@autocast_entry
def decoder_state(keys, h0=None, *, num_layers, hidden_size, attention="additive", key_weight=None, key_bias=None,
                  key_lengths=None, key_padding_mask=None):
    """The state before the first decoding step: keys (N, T_in, K) checked, masked and projected
    once for the score, h0 (num_layers, N, hidden_size) (None: zeros), a zero context."""
    score = _score(attention)
    _tensor(keys, "keys", (3,), "(N, T_in, key_size)")
    N, T_in, K = keys.shape
    _check_attention(score, hidden_size, K, None, key_weight, key_bias, None, keys, query_side=False)
    h0 = _check_h(h0, num_layers, N, hidden_size, keys)
    lengths, mask = _masks(key_lengths, key_padding_mask, N, T_in, keys.device)
    kp = reference.decoder_keys(score, keys, key_weight, key_bias)
    return DecoderState(h0, keys.new_zeros(N, K), keys, kp, lengths, mask)


@autocast_entry
def attention_decoder_step(x, state, layers, *, attention="additive", query_weight=None, v=None, input_feeding=False):
    """One decoding step from ``state`` (decoder_state, or the state a step returned): x (N, I)
    -> (output h_t (N, H), the next state, whose ``context`` is c_t). No value of any tensor is
    read on the host, so the step can be captured in a CUDA graph."""
    score = _score(attention)
    feeds = _feeds(score, input_feeding)
    if not isinstance(state, DecoderState):
        raise TypeError(f"state must be a DecoderState (from decoder_state or a previous step), got {type(state).__name__}")
    _tensor(x, "x", (2,), "(N, input_size)")
    _same(state.keys, "state.keys", x=x, h=state.h)
    if x.shape[0] != state.h.shape[1]:
        raise ValueError(f"x has batch size {x.shape[0]} but the state has {state.h.shape[1]}")
    _check_layers(layers, x.shape[-1], state.keys.shape[-1], feeds, state.keys)
    if len(layers) != state.h.shape[0]:
        raise ValueError(f"the state has {state.h.shape[0]} layers but layers holds {len(layers)}")

    which = backend_for(x, state.keys)
    kernels = which in ("triton", "interpret")
    if kernels and feeds and len(layers) == 1:
        w_ih, w_hh, b_ih, b_hh = layers[0]
        I, H = x.shape[-1], w_hh.shape[1]
        gx = F.linear(x, w_ih[:, :I], _folded_bias(b_ih, b_hh, H))
        if score != "additive":  # c_{t-1} joins this step (the kernel attends after the step)
            gx = gx + F.linear(state.context, w_ih[:, I:])
        out, ctx, _, h_n = decoder_op(gx[:, None], state.keys, state.projected_keys, v, query_weight, w_ih[:, I:],
                                      w_hh, None if b_hh is None else b_hh[2 * H:], state.h[0], state.lengths,
                                      state.key_padding_mask, _op_score(score), False)
        return out[:, 0], state._replace(h=h_n[None], context=ctx[:, 0])
    if kernels:
        cell = gru_cell_op
        attend = _kernel_attend(score, state.keys, state.projected_keys, query_weight, v, state.lengths,
                                state.key_padding_mask, False)
    else:
        cell = torch.gru_cell if which == "torch" else reference.gru_cell
        attend = reference.decoder_attention(score, state.keys, state.projected_keys, query_weight, v, state.lengths,
                                             state.key_padding_mask)
    h, context, _ = reference.decoder_step(x, state.h, state.context, layers, score, attend, input_feeding, cell)
    return h[-1], state._replace(h=h, context=context)


# ------------------------------------------------------------------------------ kernel paths


def _op_score(score):
    """The fused decoder's score: additive attends before the step; dot and general (the keys
    projected by W_a beforehand) attend after it."""
    return "additive" if score == "additive" else "dot"


def _folded_bias(b_ih, b_hh, H):
    """b_ih + [b_hr, b_hz, 0]: the part of the biases that rides on the input GEMM (b_hn stays
    inside the reset gate's product)."""
    if b_ih is None:
        return None
    return b_ih + torch.cat([b_hh[: 2 * H], b_hh.new_zeros(H)])


def _fused(inputs, keys, h0, layer, score, query_weight, key_weight, key_bias, v, lengths, mask, need_weights):
    """One layer through the fused decoder: the input and key projections as GEMMs, then the
    whole output-time loop in one launch."""
    w_ih, w_hh, b_ih, b_hh = layer
    I, H = inputs.shape[-1], w_hh.shape[1]
    gx = F.linear(inputs, w_ih[:, :I], _folded_bias(b_ih, b_hh, H))  # (N, T_out, 3H)
    kp = reference.decoder_keys(score, keys, key_weight, key_bias)
    out, ctx, weights, h_n = decoder_op(gx, keys, kp, v, query_weight, w_ih[:, I:], w_hh,
                                        None if b_hh is None else b_hh[2 * H:], h0[0], lengths, mask,
                                        _op_score(score), need_weights)
    return out, ctx, weights, h_n[None]


def _luong_unfed(inputs, keys, h0, layers, score, key_weight, lengths, mask, need_weights):
    """Luong attention without input feeding: the GRU stack over the whole sequence (the layer
    kernels), then every step's attention in one call (score h_t . k_j, or h_t . (W_a k_j))."""
    out, h_n = gru(inputs, h0, layers, len(layers), batch_first=True)
    ctx, weights = dot_attention(out, keys, keys, weight=key_weight if score == "general" else None,
                                 lengths=lengths, key_padding_mask=mask, need_weights=need_weights)
    return out, ctx, weights, h_n


def _kernel_attend(score, keys, kp, query_weight, v, lengths, mask, need_weights):
    """The fused attention kernels as a decoder step's ``attend`` (one query row per batch row)."""

    def attend(state):
        q = F.linear(state, query_weight) if score == "additive" else state
        ctx, weights = attention_op("additive" if score == "additive" else "dot", q[:, None], kp,
                                    v if score == "additive" else None, keys, lengths, mask, 1.0, need_weights)
        return ctx[:, 0], (None if weights is None else weights[:, 0])

    return attend
