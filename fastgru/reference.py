"""Pure-PyTorch statement of every op's math: the ground truth for tests and the readable spec.

Nothing here is fast. Each function says exactly what the matching kernel computes; the
tests hold the kernels to these functions (in float64) and to torch.nn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# GRU: exactly nn.GRU's equations, gate order (r, z, n).
#   r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
#   z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
#   n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
#   h' = (1 - z) * n + z * h
# ----------------------------------------------------------------------------------------------


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step. x (B, I), h (B, H), w_ih (3H, I), w_hh (3H, H) -> h' (B, H)."""
    gx = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """One direction of one layer over a time-major sequence.

    x (T, B, I), h0 (B, H), lengths (B,) or None -> (out (T, B, H), h_n (B, H)).
    Row b runs over its first ``lengths[b]`` steps (in reverse order when ``reverse``);
    past its length its state is carried unchanged and its output is zero (nn.GRU's
    PackedSequence semantics).
    """
    T, B = x.shape[0], x.shape[1]
    rows = torch.arange(B, device=x.device)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = lengths.to(device=x.device, dtype=torch.long)
    out = x.new_zeros(T, B, h0.shape[-1])
    h = h0
    for s in range(T):
        valid = s < lengths
        t = (lengths - 1 - s).clamp(min=0) if reverse else torch.full_like(lengths, s)
        h_new = gru_cell(x[t, rows], h, w_ih, w_hh, b_ih, b_hh)
        out = out.index_put((t[valid], rows[valid]), h_new[valid])
        h = torch.where(valid.unsqueeze(1), h_new, h)
    return out, h


def gru(x, h0, weights, num_layers, bidirectional=False, lengths=None, dropout=0.0, training=False):
    """A stack of GRU layers over time-major x (T, B, I).

    weights: list of (w_ih, w_hh, b_ih, b_hh) ordered layer by layer, forward direction first
    (nn.GRU's order; biases may be None). h0 (L * D, B, H). Dropout with probability
    ``dropout`` is applied to every layer's output except the last, in training only.
    Returns (out (T, B, D * H), h_n (L * D, B, H)).
    """
    D = 2 if bidirectional else 1
    layer_in = x
    h_n = []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            w_ih, w_hh, b_ih, b_hh = weights[k]
            out, h = gru_layer(layer_in, h0[k], w_ih, w_hh, b_ih, b_hh, lengths, reverse=d == 1)
            outs.append(out)
            h_n.append(h)
        layer_in = torch.cat(outs, dim=-1) if D == 2 else outs[0]
        if dropout > 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, p=dropout, training=True)
    return layer_in, torch.stack(h_n)


# ----------------------------------------------------------------------------------------------
# Attention (docs/architecture.md): the naive formulation a user would write. Batch first;
# query (N, Tq, Dq), keys (N, T, Dk), values (N, T, D). Masks: ``lengths`` (N,) -- key t of
# row n takes part when t < lengths[n] -- and/or ``key_padding_mask`` (N, T) bool, True =
# ignore (nn.MultiheadAttention's convention). A fully masked row gives zero weights and a
# zero context. Returns (context (N, Tq, D), weights (N, Tq, T)).
# ----------------------------------------------------------------------------------------------


def attention_ignore_mask(lengths, key_padding_mask, N, T, device):
    """The keys to ignore as one (N, T) bool tensor (True = ignore), or None for no mask."""
    ignore = None
    if lengths is not None:
        ignore = torch.arange(T, device=device)[None, :] >= lengths.to(device).reshape(N, 1)
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=device, dtype=torch.bool)
        ignore = kpm if ignore is None else ignore | kpm
    return ignore


def masked_softmax(scores, ignore):
    """Softmax over the last dim of scores (N, Tq, T), ignoring keys where ignore (N, T) is
    True; fully masked rows give zeros, with zero (not NaN) gradients."""
    if ignore is None:
        return torch.softmax(scores, dim=-1)
    ignore = ignore[:, None, :].expand_as(scores)
    empty = ignore.all(dim=-1, keepdim=True)
    scores = scores.masked_fill(ignore & ~empty, float("-inf")).masked_fill(empty, 0.0)
    return torch.softmax(scores, dim=-1).masked_fill(ignore, 0.0)


def additive_attention(query, keys, values, w_q, w_k, v, b_q=None, b_k=None, lengths=None, key_padding_mask=None):
    """score_ij = v . tanh(W_q q_i + b_q + W_k k_j + b_k); materialises the (N, Tq, T, A) tensor."""
    qp = F.linear(query, w_q, b_q)  # (N, Tq, A)
    kp = F.linear(keys, w_k, b_k)  # (N, T, A)
    scores = torch.tanh(qp[:, :, None, :] + kp[:, None, :, :]) @ v  # (N, Tq, T)
    ignore = attention_ignore_mask(lengths, key_padding_mask, keys.shape[0], keys.shape[1], keys.device)
    weights = masked_softmax(scores, ignore)
    return weights @ values, weights


def attention_pooling(h, weight, bias, context, lengths=None, key_padding_mask=None):
    """score_t = u . tanh(W h_t + b), u = context. h (N, T, D) -> (pooled (N, D), weights (N, T))."""
    scores = torch.tanh(F.linear(h, weight, bias)) @ context  # (N, T)
    ignore = attention_ignore_mask(lengths, key_padding_mask, h.shape[0], h.shape[1], h.device)
    weights = masked_softmax(scores[:, None, :], ignore)
    return (weights @ h)[:, 0], weights[:, 0]


def dot_attention(query, keys, values, weight=None, scale=1.0, lengths=None, key_padding_mask=None):
    """score_ij = scale * q_i . k_j ("dot"), or scale * q_i . (W k_j) with W = weight (Dq, Dk)
    ("general", Luong; computed as (W^T q_i) . k_j)."""
    if weight is not None:
        query = query @ weight  # (N, Tq, Dk)
    scores = scale * (query @ keys.transpose(1, 2))
    ignore = attention_ignore_mask(lengths, key_padding_mask, keys.shape[0], keys.shape[1], keys.device)
    weights = masked_softmax(scores, ignore)
    return weights @ values, weights
