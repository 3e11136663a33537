"""Public functions of the attention family: input checks, layout, heads, and the backend choice.

Every input is checked here, before any kernel runs. Masks: ``lengths`` (N,) integers in
[0, T] (key t of row n takes part when t < lengths[n]) and/or ``key_padding_mask`` (N, T) bool
(True = ignore). A fully masked row gives a zero context and zero weights. Weights are
returned only with ``need_weights=True``: (N, Tq, T) -- or (N, T) for a 2-D query -- averaged
over the heads with ``average_attn_weights=True`` (the default), else per head (N, H, Tq, T).

Heads (``num_heads`` = H) split the (projected) query/key features and the value columns as
nn.MultiheadAttention splits its projected dims: head h takes features [h*F/H, (h+1)*F/H) and
value columns [h*D/H, (h+1)*D/H); the context is the heads' contexts concatenated. On the
kernel path the heads are folded into the batch (row n * H + h), so one launch runs them all.

``dropout_p`` drops attention weights after the softmax (zero where dropped, kept ones scaled
by 1 / (1 - p)); the weights returned are those after dropout, as nn.MultiheadAttention returns
them. The functions always apply it when it is positive; the modules pass it only in training.

Backends (fastgru.backend.backend_for): "triton"/"interpret" run the fused kernels (dropout
drawn inside them from a seed tensor drawn per call on the inputs' device), "reference" the naive
formulation in fastgru.reference (dropout with torch's F.dropout), "torch" (CPU default) plain
PyTorch operators (the reference formulation, or scaled_dot_product_attention for dot attention
without weights). Which path dot attention takes: :func:`dot_attention_path`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import reference
from ..backend import backend_for
from ..ops.attention import attention_op
from ..ops.guard import autocast_entry
from .checks import check_lengths

__all__ = ["attention_pooling", "attention_penalty", "additive_attention", "dot_attention", "dot_attention_path"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ------------------------------------------------------------------------------ checks


def _tensor(x, name, dims, what):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if x.dim() not in dims:
        raise ValueError(f"{name} must be {what}, got shape {tuple(x.shape)}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must have a floating dtype (float16, bfloat16, float32, float64), got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def _same(ref, ref_name, **others):
    for name, x in others.items():
        if x is None:
            continue
        if x.device != ref.device:
            raise RuntimeError(f"{name} is on {x.device} but {ref_name} is on {ref.device}; move them to one device")
        if x.dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has {ref.dtype}; use one dtype")


def _param(x, name, shape):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def _masks(lengths, key_padding_mask, N, T, device):
    """Checked (lengths int64 on device or None, key_padding_mask bool on device or None)."""
    if lengths is not None:
        lengths = check_lengths(lengths, N, 0, T, "the number of keys", device).contiguous()
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor):
            raise TypeError(f"key_padding_mask must be a bool tensor of shape ({N}, {T}), got {type(key_padding_mask).__name__}")
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(f"key_padding_mask must have dtype torch.bool (True = ignore), got {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (N, T):
            raise ValueError(f"key_padding_mask must have shape ({N}, {T}), got {tuple(key_padding_mask.shape)}")
        if key_padding_mask.device != device:
            raise RuntimeError(f"key_padding_mask is on {key_padding_mask.device} but the keys are on {device}")
    return lengths, key_padding_mask


def _layout(query, keys, values, batch_first, q_size, k_size):
    """Check shapes; return batch-first (query (N, Tq, Dq), keys, values, query_was_2d)."""
    _tensor(query, "query", (2, 3), f"(N, {q_size}) or (N, Tq, {q_size})" if batch_first else f"(N, {q_size}) or (Tq, N, {q_size})")
    _tensor(keys, "keys", (3,), f"(N, T, {k_size})" if batch_first else f"(T, N, {k_size})")
    if values is None:
        values = keys
    _tensor(values, "values", (3,), "(N, T, D)" if batch_first else "(T, N, D)")
    _same(keys, "keys", query=query, values=values)
    if not batch_first:
        keys, values = keys.transpose(0, 1), values.transpose(0, 1)
        if query.dim() == 3:
            query = query.transpose(0, 1)
    squeeze = query.dim() == 2
    if squeeze:
        query = query.unsqueeze(1)
    N, T = keys.shape[0], keys.shape[1]
    if query.shape[0] != N:
        raise ValueError(f"query has batch size {query.shape[0]} but keys have {N}")
    if values.shape[0] != N or values.shape[1] != T:
        raise ValueError(f"values must have batch size {N} and {T} steps like keys, got {tuple(values.shape)} (batch first)")
    if query.shape[-1] != q_size:
        raise ValueError(f"query has {query.shape[-1]} features, expected {q_size}")
    if keys.shape[-1] != k_size:
        raise ValueError(f"keys have {keys.shape[-1]} features, expected {k_size}")
    return query, keys, values, squeeze


def _num_heads(num_heads, **split):
    """Check num_heads: a positive int dividing every size in ``split`` (name -> size)."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int):
        raise TypeError(f"num_heads must be a positive int, got {type(num_heads).__name__}")
    if num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads}")
    for name, size in split.items():
        if size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide {name} ({size}): each head takes an equal slice")
    return num_heads


def _dropout(dropout_p):
    """Check dropout_p: a number in [0, 1); returned as a float."""
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p}")
    return float(dropout_p)


def _weights(weights, need_weights, average):
    """Per-head weights (N, H, Tq, T) as returned: None, averaged (N, Tq, T), or per head."""
    if not need_weights:
        return None
    if not average:
        return weights
    return weights[:, 0] if weights.shape[1] == 1 else weights.mean(dim=1)


def _finish(out, weights, squeeze, batch_first):
    """Back to the caller's layout; weights stay batch first (as nn.MultiheadAttention's)."""
    if squeeze:
        return out[:, 0], (None if weights is None else weights[..., 0, :])
    if not batch_first:
        out = out.transpose(0, 1)
    return out, weights


def _fused(score, q, k, w, values, lengths, mask, scale, need_weights, dropout_p, heads):
    """The fused kernels over all heads at once: q (N, Tq, F), k (N, T, F), values (N, T, D),
    the additive score vector ``w`` (F,) (None for dot). Heads are folded into the batch
    (row n * H + h; per-row lengths and mask stay per batch row). Returns (context (N, Tq, D),
    weights (N, H, Tq, T) or None)."""
    N = q.shape[0]
    if heads > 1:
        fold = lambda x: reference.split_heads(x, heads).flatten(0, 1)  # noqa: E731  (N * H, T, F / H)
        q, k, values = fold(q), fold(k), fold(values)
        w = None if w is None else w.reshape(heads, -1)
    out, weights = attention_op(score, q, k, w, values, lengths, mask, scale, need_weights,
                                dropout_p=dropout_p, heads=heads)
    if heads > 1:
        out = reference.merge_heads(out.unflatten(0, (N, heads)))
    return out, (None if weights is None else weights.unflatten(0, (N, heads)))


def _plain(out, weights):
    """A reference result's weights with a head axis: (N, H, Tq, T)."""
    return out, (weights[:, None] if weights.dim() == 3 else weights)


# ------------------------------------------------------------------------------ ops


@autocast_entry
def additive_attention(query, keys, values=None, *, query_weight, key_weight, v, query_bias=None, key_bias=None,
                       num_heads=1, dropout_p=0.0, lengths=None, key_padding_mask=None, need_weights=False,
                       average_attn_weights=True, batch_first=True):
    """Additive (Bahdanau) attention: score_ij = v . tanh(W_q q_i + b_q + W_k k_j + b_k).

    query (N, Dq) or (N, Tq, Dq), keys (N, T, Dk), values (N, T, D) (default: keys);
    query_weight (A, Dq), key_weight (A, Dk), v (A,), biases (A,) or None. With
    ``batch_first=False`` the time axis comes first: query (Tq, N, Dq), keys (T, N, Dk).
    ``num_heads`` H (dividing A and D): head h scores with features [h*A/H, (h+1)*A/H) of the
    projections and of v, and attends over value columns [h*D/H, (h+1)*D/H).
    Returns (context (N, D) or (N, Tq, D), weights or None): weights (N, T) or (N, Tq, T), or
    per head (N, H, T) / (N, H, Tq, T) with ``average_attn_weights=False``.
    """
    if not isinstance(key_weight, torch.Tensor) or key_weight.dim() != 2:
        raise ValueError("key_weight must be a 2-D tensor of shape (attention_size, key_size)")
    if not isinstance(query_weight, torch.Tensor) or query_weight.dim() != 2:
        raise ValueError("query_weight must be a 2-D tensor of shape (attention_size, query_size)")
    A = key_weight.shape[0]
    query, keys, values, squeeze = _layout(query, keys, values, batch_first, query_weight.shape[1], key_weight.shape[1])
    _param(query_weight, "query_weight", (A, query.shape[-1]))
    _param(v, "v", (A,))
    for name, b in (("query_bias", query_bias), ("key_bias", key_bias)):
        if b is not None:
            _param(b, name, (A,))
    _same(keys, "keys", query_weight=query_weight, key_weight=key_weight, v=v, query_bias=query_bias, key_bias=key_bias)
    H = _num_heads(num_heads, attention_size=A, **{"the value size": values.shape[-1]})
    dropout_p = _dropout(dropout_p)
    need_weights, average = bool(need_weights), bool(average_attn_weights)
    N, T = keys.shape[0], keys.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, keys.device)

    backend = backend_for(query, keys, values)
    if backend in ("triton", "interpret"):
        qp = F.linear(query, query_weight, query_bias)
        kp = F.linear(keys, key_weight, key_bias)
        out, weights = _fused("additive", qp, kp, v, values, lengths, key_padding_mask, 1.0, need_weights, dropout_p, H)
    else:  # "reference" and "torch": the plain formulation (PyTorch's own CPU ops)
        out, weights = _plain(*reference.additive_attention(
            query, keys, values, query_weight, key_weight, v, query_bias, key_bias, lengths, key_padding_mask,
            num_heads=H, dropout_p=dropout_p,
        ))
    return _finish(out, _weights(weights, need_weights, average), squeeze, batch_first)


@autocast_entry
def attention_pooling(h, *, weight, bias, context, dropout_p=0.0, lengths=None, key_padding_mask=None,
                      need_weights=False, batch_first=True):
    """Attention pooling: score_jt = u_j . tanh(W h_t + b), pooled_j = sum_t a_jt h_t, a_j the
    masked softmax of score_j over t.

    h (N, T, D) (or (T, N, D) with ``batch_first=False``), weight (A, D), bias (A,) or None.
    context u (A,): one vector, returns (pooled (N, D), weights (N, T) or None). context (r, A):
    r hops (structured self-attention, Lin et al. 2017: A = softmax(W_s2 tanh(W_s1 H^T)) with
    W_s2 = context), returns (pooled (N, r, D), weights (N, r, T) or None); penalise redundant
    hops with :func:`attention_penalty`. On the kernels all hops run in one pass over h: the
    dot score between the hops and tanh(W h_t + b).
    """
    _tensor(h, "h", (3,), "(N, T, D)" if batch_first else "(T, N, D)")
    if not batch_first:
        h = h.transpose(0, 1)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-D tensor of shape (attention_size, input_size)")
    A = weight.shape[0]
    _param(weight, "weight", (A, h.shape[-1]))
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be a torch.Tensor of shape ({A},) or (hops, {A}), got {type(context).__name__}")
    if context.dim() not in (1, 2) or context.shape[-1] != A or context.numel() == 0:
        raise ValueError(f"context must have shape ({A},) or (hops, {A}), got {tuple(context.shape)}")
    if bias is not None:
        _param(bias, "bias", (A,))
    _same(h, "h", weight=weight, bias=bias, context=context)
    dropout_p = _dropout(dropout_p)
    need_weights = bool(need_weights)
    N, T = h.shape[0], h.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, h.device)

    backend = backend_for(h)
    if backend not in ("triton", "interpret"):
        out, weights = reference.attention_pooling(h, weight, bias, context, lengths, key_padding_mask,
                                                   dropout_p=dropout_p)
        return out, (weights if need_weights else None)
    if context.dim() == 1:
        # One vector: the additive score with a zero query (it needs no gradient, so no dq pass runs).
        kp = F.linear(h, weight, bias)
        qp = kp.new_zeros(N, 1, A)
        out, weights = _fused("additive", qp, kp, context, h, lengths, key_padding_mask, 1.0, need_weights,
                              dropout_p, 1)
        return out[:, 0], (weights[:, 0, 0] if need_weights else None)
    keys = torch.tanh(F.linear(h, weight, bias))  # (N, T, A)
    hops = context.expand(N, *context.shape)  # (N, r, A), stride 0 over the batch
    out, weights = _fused("dot", hops, keys, None, h, lengths, key_padding_mask, 1.0, need_weights, dropout_p, 1)
    return out, (weights[:, 0] if need_weights else None)


def attention_penalty(weights):
    """The redundancy penalty of multi-hop pooling (Lin et al. 2017): ||A A^T - I||_F^2 for the
    hop weights A (N, r, T) of :func:`attention_pooling`, averaged over the batch. Differentiable;
    add it, times a coefficient, to the loss."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor of shape (N, hops, T), got {type(weights).__name__}")
    if weights.dim() != 3 or weights.numel() == 0:
        raise ValueError(f"weights must have shape (N, hops, T) (attention_pooling's hop weights), got {tuple(weights.shape)}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must have a floating dtype, got {weights.dtype}")
    return reference.attention_penalty(weights)


def _dot_path(backend, need_weights):
    if backend == "reference":
        return "reference"
    if backend == "interpret":
        return "fused"
    if need_weights:
        return "fused" if backend == "triton" else "reference"
    return "sdpa"


def dot_attention_path(query, keys, values=None, *, need_weights=False):
    """Which implementation :func:`dot_attention` runs for these tensors: "sdpa" | "fused" | "reference".

    - "sdpa": PyTorch's F.scaled_dot_product_attention (its flash / memory-efficient kernels on
      CUDA), when no weights are asked for, on CUDA ("triton" backend) and on the CPU default
      ("torch"). Fully masked rows give a zero context; dropout is SDPA's own.
    - "fused": fastgru's kernels -- on CUDA when the weights are asked for (SDPA does not return
      them), and always under the interpreter ("interpret" backend: how the tests run them).
    - "reference": the plain formulation of fastgru.reference -- the "reference" backend, and
      the CPU default when the weights are asked for.
    """
    return _dot_path(backend_for(query, keys, values), bool(need_weights))


@autocast_entry
def dot_attention(query, keys, values=None, *, weight=None, scale=None, num_heads=1, dropout_p=0.0, lengths=None,
                  key_padding_mask=None, need_weights=False, average_attn_weights=True, batch_first=True):
    """Dot-product (Luong) attention: score_ij = scale * q_i . k_j ("dot"), or with ``weight``
    W (Dq, Dk) ("general") scale * q_i . (W k_j), computed as (W^T q_i) . k_j.

    ``scale`` defaults to 1 (Luong); pass (Dk / H) ** -0.5 for scaled dot-product attention.
    ``num_heads`` H (dividing Dk and D): head h scores with features [h*Dk/H, (h+1)*Dk/H) of
    the (projected) queries and of the keys, and attends over value columns [h*D/H, (h+1)*D/H)
    -- nn.MultiheadAttention's formulation on already projected inputs. Shapes and weights as
    in :func:`additive_attention`; which implementation runs: :func:`dot_attention_path`.
    """
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError("weight must be a 2-D tensor of shape (query_size, key_size)")
        q_size, k_size = weight.shape
    else:
        q_size = query.shape[-1] if isinstance(query, torch.Tensor) else None
        k_size = q_size
    query, keys, values, squeeze = _layout(query, keys, values, batch_first, q_size, k_size)
    _same(keys, "keys", weight=weight)
    H = _num_heads(num_heads, **{"the key size": keys.shape[-1], "the value size": values.shape[-1]})
    dropout_p = _dropout(dropout_p)
    need_weights, average = bool(need_weights), bool(average_attn_weights)
    scale = 1.0 if scale is None else float(scale)
    N, T = keys.shape[0], keys.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, keys.device)
    if weight is not None:
        query = F.linear(query, weight.t())  # (N, Tq, Dk)

    path = _dot_path(backend_for(query, keys, values), need_weights)
    if path == "fused":
        out, weights = _fused("dot", query, keys, None, values, lengths, key_padding_mask, scale, need_weights,
                              dropout_p, H)
    elif path == "sdpa":
        out, weights = _sdpa(query, keys, values, lengths, key_padding_mask, scale, dropout_p, H), None
    else:
        out, weights = _plain(*reference.dot_attention(query, keys, values, None, scale, lengths, key_padding_mask,
                                                       num_heads=H, dropout_p=dropout_p))
    return _finish(out, _weights(weights, need_weights, average), squeeze, batch_first)


def _sdpa(query, keys, values, lengths, key_padding_mask, scale, dropout_p, heads):
    """PyTorch's scaled_dot_product_attention over (N, H, T, d) views; fully masked rows give
    zeros, not NaN."""
    q, k, v = (reference.split_heads(x, heads) for x in (query, keys, values))
    ignore = reference.attention_ignore_mask(lengths, key_padding_mask, keys.shape[0], keys.shape[1], keys.device)
    if ignore is None:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
        return reference.merge_heads(out)
    empty = ignore.all(dim=1)  # (N,)
    keep = ~(ignore & ~empty[:, None])  # SDPA's mask: True = take part; open empty rows, zero them below
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], dropout_p=dropout_p, scale=scale)
    return reference.merge_heads(out).masked_fill(empty[:, None, None], 0.0)
