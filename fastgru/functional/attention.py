"""Public functions of the attention family: input checks, layout, and the backend choice.

Every input is checked here, before any kernel runs. Masks: ``lengths`` (N,) integers in
[0, T] (key t of row n takes part when t < lengths[n]) and/or ``key_padding_mask`` (N, T) bool
(True = ignore). A fully masked row gives a zero context and zero weights. Weights are
returned (N, Tq, T) -- or (N, T) for a 2-D query / pooling -- only with ``need_weights=True``.

Backends (fastgru.backend.backend_for): "triton"/"interpret" run the fused kernels,
"reference" the naive formulation in fastgru.reference, "torch" (CPU default) plain PyTorch
operators (the reference formulation for additive attention; scaled_dot_product_attention
for dot attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import reference
from ..backend import backend_for
from ..ops.attention import attention_op
from ..ops.guard import autocast_entry
from .checks import check_lengths

__all__ = ["attention_pooling", "additive_attention", "dot_attention"]

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


def _finish(out, weights, squeeze, batch_first):
    if squeeze:
        return out[:, 0], (None if weights is None else weights[:, 0])
    if not batch_first:
        out = out.transpose(0, 1)
    return out, weights


# ------------------------------------------------------------------------------ ops


@autocast_entry
def additive_attention(query, keys, values=None, *, query_weight, key_weight, v, query_bias=None, key_bias=None,
                       lengths=None, key_padding_mask=None, need_weights=False, batch_first=True):
    """Additive (Bahdanau) attention: score_ij = v . tanh(W_q q_i + b_q + W_k k_j + b_k).

    query (N, Dq) or (N, Tq, Dq), keys (N, T, Dk), values (N, T, D) (default: keys);
    query_weight (A, Dq), key_weight (A, Dk), v (A,), biases (A,) or None. With
    ``batch_first=False`` the time axis comes first: query (Tq, N, Dq), keys (T, N, Dk).
    Returns (context (N, D) or (N, Tq, D), weights (N, T) or (N, Tq, T), or None).
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
    N, T = keys.shape[0], keys.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, keys.device)

    backend = backend_for(query, keys, values)
    if backend in ("triton", "interpret"):
        qp = F.linear(query, query_weight, query_bias)
        kp = F.linear(keys, key_weight, key_bias)
        out, weights = attention_op("additive", qp, kp, v, values, lengths, key_padding_mask, 1.0, need_weights)
    else:  # "reference" and "torch": the plain formulation (PyTorch's own CPU ops)
        out, weights = reference.additive_attention(
            query, keys, values, query_weight, key_weight, v, query_bias, key_bias, lengths, key_padding_mask
        )
        weights = weights if need_weights else None
    return _finish(out, weights, squeeze, batch_first)


@autocast_entry
def attention_pooling(h, *, weight, bias, context, lengths=None, key_padding_mask=None, need_weights=False,
                      batch_first=True):
    """Attention pooling: score_t = u . tanh(W h_t + b) with u = context; pooled = sum_t a_t h_t.

    h (N, T, D) (or (T, N, D) with ``batch_first=False``), weight (A, D), bias (A,) or None,
    context (A,). Returns (pooled (N, D), weights (N, T) or None). Runs on the additive kernel
    with a zero query projection.
    """
    _tensor(h, "h", (3,), "(N, T, D)" if batch_first else "(T, N, D)")
    if not batch_first:
        h = h.transpose(0, 1)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-D tensor of shape (attention_size, input_size)")
    A = weight.shape[0]
    _param(weight, "weight", (A, h.shape[-1]))
    _param(context, "context", (A,))
    if bias is not None:
        _param(bias, "bias", (A,))
    _same(h, "h", weight=weight, bias=bias, context=context)
    N, T = h.shape[0], h.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, h.device)

    backend = backend_for(h)
    if backend in ("triton", "interpret"):
        kp = F.linear(h, weight, bias)
        qp = kp.new_zeros(N, 1, A)  # a zero query: needs no gradient, so no dq pass runs
        out, weights = attention_op("additive", qp, kp, context, h, lengths, key_padding_mask, 1.0, need_weights)
        return out[:, 0], (weights[:, 0] if need_weights else None)
    out, weights = reference.attention_pooling(h, weight, bias, context, lengths, key_padding_mask)
    return out, (weights if need_weights else None)


@autocast_entry
def dot_attention(query, keys, values=None, *, weight=None, scale=None, lengths=None, key_padding_mask=None,
                  need_weights=False, batch_first=True):
    """Dot-product (Luong) attention: score_ij = scale * q_i . k_j ("dot"), or with ``weight``
    W (Dq, Dk) ("general") scale * q_i . (W k_j), computed as (W^T q_i) . k_j.

    ``scale`` defaults to 1 (Luong); pass Dk ** -0.5 for scaled dot-product attention.
    Shapes as in :func:`additive_attention`.
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
    scale = 1.0 if scale is None else float(scale)
    N, T = keys.shape[0], keys.shape[1]
    lengths, key_padding_mask = _masks(lengths, key_padding_mask, N, T, keys.device)
    if weight is not None:
        query = F.linear(query, weight.t())  # (N, Tq, Dk)

    backend = backend_for(query, keys, values)
    if backend in ("triton", "interpret"):
        out, weights = attention_op("dot", query, keys, None, values, lengths, key_padding_mask, scale, need_weights)
    elif backend == "torch" and not need_weights:
        out = _sdpa(query, keys, values, lengths, key_padding_mask, scale)
        weights = None
    else:
        out, weights = reference.dot_attention(query, keys, values, None, scale, lengths, key_padding_mask)
        weights = weights if need_weights else None
    return _finish(out, weights, squeeze, batch_first)


def _sdpa(query, keys, values, lengths, key_padding_mask, scale):
    """PyTorch's scaled_dot_product_attention; fully masked rows give zeros, not NaN."""
    ignore = reference.attention_ignore_mask(lengths, key_padding_mask, keys.shape[0], keys.shape[1], keys.device)
    if ignore is None:
        return F.scaled_dot_product_attention(query, keys, values, scale=scale)
    empty = ignore.all(dim=1)  # (N,)
    keep = ~(ignore & ~empty[:, None])  # SDPA's mask: True = take part; open empty rows, zero them below
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=keep[:, None, :], scale=scale)
    return out.masked_fill(empty[:, None, None], 0.0)
