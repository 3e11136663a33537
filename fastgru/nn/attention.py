"""Attention modules over sequences: AttentionPooling, AdditiveAttention,
DotAttention. Batch first by default (``batch_first=False`` puts time first). Each forward
returns (context, weights or None); weights only with ``need_weights=True``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import functional as AF

__all__ = ["AttentionPooling", "AdditiveAttention", "DotAttention"]


def _vector(size, device, dtype):
    """A learned score vector, initialised like the weight of nn.Linear(size, 1)."""
    bound = 1.0 / math.sqrt(size)
    return nn.Parameter(torch.empty(size, device=device, dtype=dtype).uniform_(-bound, bound))


class AttentionPooling(nn.Module):
    """Pools a sequence h (N, T, input_size) into one vector (N, input_size):
    score_t = u . tanh(W h_t + b), weights = masked softmax over t, pooled = sum_t weights_t h_t.

    Parameters: ``proj`` (nn.Linear(input_size, attention_size)), ``context`` (u, (attention_size,)).
    forward(h, lengths=None, key_padding_mask=None, need_weights=False) -> (pooled, weights (N, T) or None).
    """

    def __init__(self, input_size, attention_size, batch_first=True, device=None, dtype=None):
        super().__init__()
        self.input_size, self.attention_size, self.batch_first = input_size, attention_size, batch_first
        self.proj = nn.Linear(input_size, attention_size, device=device, dtype=dtype)
        self.context = _vector(attention_size, device, dtype)

    def forward(self, h, lengths=None, key_padding_mask=None, need_weights=False):
        return AF.attention_pooling(
            h, weight=self.proj.weight, bias=self.proj.bias, context=self.context, lengths=lengths,
            key_padding_mask=key_padding_mask, need_weights=need_weights, batch_first=self.batch_first,
        )

    def extra_repr(self):
        return f"input_size={self.input_size}, attention_size={self.attention_size}, batch_first={self.batch_first}"


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau; Luong "concat") attention: score_ij = v . tanh(W_q q_i + W_k k_j + b).

    Parameters: ``query_proj`` (nn.Linear(query_size, attention_size, bias=False)), ``key_proj``
    (nn.Linear(key_size, attention_size, bias=bias): it holds the score's single bias b), ``v``.
    forward(query (N, Dq) or (N, Tq, Dq), keys (N, T, Dk), values=None (defaults to keys),
    lengths=None, key_padding_mask=None, need_weights=False) -> (context, weights or None).
    """

    def __init__(self, query_size, key_size, attention_size, bias=True, batch_first=True, device=None, dtype=None):
        super().__init__()
        self.query_size, self.key_size, self.attention_size = query_size, key_size, attention_size
        self.batch_first = batch_first
        self.query_proj = nn.Linear(query_size, attention_size, bias=False, device=device, dtype=dtype)
        self.key_proj = nn.Linear(key_size, attention_size, bias=bias, device=device, dtype=dtype)
        self.v = _vector(attention_size, device, dtype)

    def forward(self, query, keys, values=None, lengths=None, key_padding_mask=None, need_weights=False):
        return AF.additive_attention(
            query, keys, values, query_weight=self.query_proj.weight, key_weight=self.key_proj.weight, v=self.v,
            query_bias=self.query_proj.bias, key_bias=self.key_proj.bias, lengths=lengths,
            key_padding_mask=key_padding_mask, need_weights=need_weights, batch_first=self.batch_first,
        )

    def extra_repr(self):
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, attention_size={self.attention_size}, "
            f"bias={self.key_proj.bias is not None}, batch_first={self.batch_first}"
        )


class DotAttention(nn.Module):
    """Dot-product (Luong) attention: score = scale * q . k ("dot", needs key_size == query_size)
    or scale * q . (W k) ("general", parameter ``proj`` = nn.Linear(key_size, query_size,
    bias=False); computed as (W^T q) . k). ``scale=None`` means 1 (Luong); pass
    key_size ** -0.5 for scaled dot-product attention. Same forward as AdditiveAttention.
    """

    def __init__(self, query_size, key_size=None, method="dot", scale=None, batch_first=True, device=None, dtype=None):
        super().__init__()
        key_size = query_size if key_size is None else key_size
        if method not in ("dot", "general"):
            raise ValueError(f"method must be 'dot' or 'general', got {method!r}")
        if method == "dot" and key_size != query_size:
            raise ValueError(f"method='dot' needs key_size == query_size, got {key_size} and {query_size}; use 'general'")
        self.query_size, self.key_size, self.method, self.scale = query_size, key_size, method, scale
        self.batch_first = batch_first
        self.proj = nn.Linear(key_size, query_size, bias=False, device=device, dtype=dtype) if method == "general" else None

    def forward(self, query, keys, values=None, lengths=None, key_padding_mask=None, need_weights=False):
        return AF.dot_attention(
            query, keys, values, weight=None if self.proj is None else self.proj.weight, scale=self.scale,
            lengths=lengths, key_padding_mask=key_padding_mask, need_weights=need_weights, batch_first=self.batch_first,
        )

    def extra_repr(self):
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, method={self.method!r}, "
            f"scale={self.scale}, batch_first={self.batch_first}"
        )
