"""Attention modules over sequences: AttentionPooling, AdditiveAttention,
DotAttention. Batch first by default (``batch_first=False`` puts time first). Each forward
returns (context, weights or None); weights only with ``need_weights=True``, averaged over the
heads unless ``average_attn_weights=False``. Dropout on the attention weights (``dropout``)
applies only in training mode, as in nn.MultiheadAttention."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import functional as AF

__all__ = ["AttentionPooling", "AdditiveAttention", "DotAttention"]

_METHODS = ("dot", "general", "projected")


def _vector(size, device, dtype, rows=None):
    """A learned score vector (or ``rows`` of them), initialised like the weight of nn.Linear(size, 1)."""
    bound = 1.0 / math.sqrt(size)
    shape = (size,) if rows is None else (rows, size)
    return nn.Parameter(torch.empty(shape, device=device, dtype=dtype).uniform_(-bound, bound))


def _check_heads(num_heads, **split):
    """Constructor check: num_heads a positive int dividing every size in ``split``."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    for name, size in split.items():
        if size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide {name} ({size})")


def _check_dropout(dropout):
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
    return float(dropout)


def _heads_repr(module):
    """The repr's tail: num_heads and dropout where they are not the defaults."""
    extra = f", num_heads={module.num_heads}" if module.num_heads != 1 else ""
    return extra + (f", dropout={module.dropout}" if module.dropout else "")


def _features(**inputs):
    """Before a projection: each input (name -> (tensor, expected feature size)) is a tensor with
    that many features (the functional layer checks the rest)."""
    for name, (x, size) in inputs.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != size:
            raise ValueError(f"{name} has {x.shape[-1] if x.dim() else 0} features, expected {size}")


class AttentionPooling(nn.Module):
    """Pools a sequence h (N, T, input_size) into one vector (N, input_size):
    score_t = u . tanh(W h_t + b), weights = masked softmax over t, pooled = sum_t weights_t h_t.

    With ``num_heads`` = r > 1: r hops of structured self-attention (Lin et al. 2017), one score
    vector u_j per hop, A = softmax(W_s2 tanh(W_s1 H^T)) with W_s2 = context: pooled
    (N, r, input_size), weights (N, r, T); ``penalty(weights)`` is the paper's ||A A^T - I||_F^2
    (batch mean) to add to the loss.

    Parameters: ``proj`` (nn.Linear(input_size, attention_size)), ``context`` (u: (attention_size,)
    for one hop, (r, attention_size) for r).
    forward(h, lengths=None, key_padding_mask=None, need_weights=False) -> (pooled, weights or None).
    """

    def __init__(self, input_size, attention_size, num_heads=1, dropout=0.0, batch_first=True, device=None,
                 dtype=None):
        super().__init__()
        _check_heads(num_heads)
        self.input_size, self.attention_size, self.batch_first = input_size, attention_size, batch_first
        self.num_heads, self.dropout = num_heads, _check_dropout(dropout)
        self.proj = nn.Linear(input_size, attention_size, device=device, dtype=dtype)
        self.context = _vector(attention_size, device, dtype, None if num_heads == 1 else num_heads)

    def forward(self, h, lengths=None, key_padding_mask=None, need_weights=False):
        return AF.attention_pooling(
            h, weight=self.proj.weight, bias=self.proj.bias, context=self.context,
            dropout_p=self.dropout if self.training else 0.0, lengths=lengths, key_padding_mask=key_padding_mask,
            need_weights=need_weights, batch_first=self.batch_first,
        )

    @staticmethod
    def penalty(weights):
        """||A A^T - I||_F^2 of the hop weights (N, r, T), averaged over the batch."""
        return AF.attention_penalty(weights)

    def extra_repr(self):
        return (
            f"input_size={self.input_size}, attention_size={self.attention_size}, batch_first={self.batch_first}"
            + _heads_repr(self)
        )


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau; Luong "concat") attention: score_ij = v . tanh(W_q q_i + W_k k_j + b).

    With ``num_heads`` H (dividing attention_size and the value size): head h scores with its
    slice [h*A/H, (h+1)*A/H) of the projections and of v and attends over its slice of the
    value columns; the heads' contexts are concatenated.

    Parameters: ``query_proj`` (nn.Linear(query_size, attention_size, bias=False)), ``key_proj``
    (nn.Linear(key_size, attention_size, bias=bias): it holds the score's single bias b), ``v``.
    forward(query (N, Dq) or (N, Tq, Dq), keys (N, T, Dk), values=None (defaults to keys),
    lengths=None, key_padding_mask=None, need_weights=False, average_attn_weights=True)
    -> (context, weights or None).
    """

    def __init__(self, query_size, key_size, attention_size, num_heads=1, dropout=0.0, bias=True, batch_first=True,
                 device=None, dtype=None):
        super().__init__()
        _check_heads(num_heads, attention_size=attention_size)
        self.query_size, self.key_size, self.attention_size = query_size, key_size, attention_size
        self.num_heads, self.dropout, self.batch_first = num_heads, _check_dropout(dropout), batch_first
        self.query_proj = nn.Linear(query_size, attention_size, bias=False, device=device, dtype=dtype)
        self.key_proj = nn.Linear(key_size, attention_size, bias=bias, device=device, dtype=dtype)
        self.v = _vector(attention_size, device, dtype)

    def forward(self, query, keys, values=None, lengths=None, key_padding_mask=None, need_weights=False,
                average_attn_weights=True):
        return AF.additive_attention(
            query, keys, values, query_weight=self.query_proj.weight, key_weight=self.key_proj.weight, v=self.v,
            query_bias=self.query_proj.bias, key_bias=self.key_proj.bias, num_heads=self.num_heads,
            dropout_p=self.dropout if self.training else 0.0, lengths=lengths, key_padding_mask=key_padding_mask,
            need_weights=need_weights, average_attn_weights=average_attn_weights, batch_first=self.batch_first,
        )

    def extra_repr(self):
        return (
            f"query_size={self.query_size}, key_size={self.key_size}, attention_size={self.attention_size}, "
            f"bias={self.key_proj.bias is not None}, batch_first={self.batch_first}" + _heads_repr(self)
        )


class DotAttention(nn.Module):
    """Dot-product attention, three methods:

    - "dot" (Luong): score = scale * q . k (needs key_size == query_size);
    - "general" (Luong): scale * q . (W k), parameter ``proj`` = nn.Linear(key_size, query_size,
      bias=False), computed as (W^T q) . k;
    - "projected": nn.MultiheadAttention's formulation, with its parameters as nn.Linear layers
      with bias: ``q_proj`` (query_size -> query_size), ``k_proj`` (key_size -> query_size),
      ``v_proj`` (value_size -> query_size), ``out_proj`` (query_size -> query_size);
      context = out_proj(attention(q_proj(query), k_proj(keys), v_proj(values))). With
      query_size = embed_dim, key_size = kdim, value_size = vdim it computes what
      nn.MultiheadAttention(embed_dim, num_heads, kdim=kdim, vdim=vdim, batch_first=True) does.

    ``num_heads`` H splits the (projected) key features and the value columns into H heads.
    ``scale=None`` means head_dim ** -0.5 for "projected" (as nn.MultiheadAttention) and 1 for
    "dot" / "general" (Luong; pass key_size ** -0.5 for scaled dot-product attention).
    ``value_size`` (default key_size) is the values' feature size, used by "projected" only.
    Same forward as AdditiveAttention. Without weights on CUDA, the call runs PyTorch's
    scaled_dot_product_attention (see fastgru.functional.dot_attention_path).
    """

    def __init__(self, query_size, key_size=None, method="dot", scale=None, num_heads=1, dropout=0.0,
                 value_size=None, batch_first=True, device=None, dtype=None):
        super().__init__()
        key_size = query_size if key_size is None else key_size
        value_size = key_size if value_size is None else value_size
        if method not in _METHODS:
            raise ValueError(f"method must be 'dot', 'general' or 'projected', got {method!r}")
        if method == "dot" and key_size != query_size:
            raise ValueError(f"method='dot' needs key_size == query_size, got {key_size} and {query_size}; use 'general'")
        _check_heads(num_heads, **({"query_size": query_size} if method == "projected" else {"key_size": key_size}))
        self.query_size, self.key_size, self.value_size, self.method = query_size, key_size, value_size, method
        self.num_heads, self.dropout, self.batch_first = num_heads, _check_dropout(dropout), batch_first
        if scale is None and method == "projected":
            scale = (query_size // num_heads) ** -0.5
        self.scale = scale
        factory = {"device": device, "dtype": dtype}
        self.proj = nn.Linear(key_size, query_size, bias=False, **factory) if method == "general" else None
        if method == "projected":
            self.q_proj = nn.Linear(query_size, query_size, **factory)
            self.k_proj = nn.Linear(key_size, query_size, **factory)
            self.v_proj = nn.Linear(value_size, query_size, **factory)
            self.out_proj = nn.Linear(query_size, query_size, **factory)
            self._reset_projections()

    def _reset_projections(self):
        """nn.MultiheadAttention's initialisation: Xavier-uniform input projections, zero biases."""
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query, keys, values=None, lengths=None, key_padding_mask=None, need_weights=False,
                average_attn_weights=True):
        weight = None if self.proj is None else self.proj.weight
        if self.method == "projected":
            values = keys if values is None else values
            _features(query=(query, self.query_size), keys=(keys, self.key_size), values=(values, self.value_size))
            query, keys, values = self.q_proj(query), self.k_proj(keys), self.v_proj(values)
        context, weights = AF.dot_attention(
            query, keys, values, weight=weight, scale=self.scale, num_heads=self.num_heads,
            dropout_p=self.dropout if self.training else 0.0, lengths=lengths, key_padding_mask=key_padding_mask,
            need_weights=need_weights, average_attn_weights=average_attn_weights, batch_first=self.batch_first,
        )
        if self.method == "projected":
            context = self.out_proj(context)
        return context, weights

    def extra_repr(self):
        sizes = f"query_size={self.query_size}, key_size={self.key_size}"
        if self.method == "projected":
            sizes += f", value_size={self.value_size}"
        return f"{sizes}, method={self.method!r}, scale={self.scale}, batch_first={self.batch_first}" + _heads_repr(self)
