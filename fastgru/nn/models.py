"""Ready-made models built from fastgru's layers."""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionPooling
from .recurrent import GRU

__all__ = ["GRUAttention"]


class GRUAttention(nn.Module):
    """Sequence classifier/regressor: GRU encoder -> AttentionPooling over its outputs (masked by
    ``lengths``) -> linear head.

    Submodules: ``encoder`` (fastgru.GRU, batch_first=True), ``pooling`` (AttentionPooling over
    the encoder's num_directions * hidden_size features, attention_size defaults to hidden_size),
    ``head`` (nn.Linear to output_size). ``dropout`` is the GRU's (between layers);
    ``reset_after=False`` gives the encoder the original GRU formulation (see GRU).

    forward(x (N, T, input_size), lengths=None) -> (logits (N, output_size), weights (N, T)).
    With ``lengths`` (N,) the encoder runs each row over its own steps (the reverse direction
    starting at the row's last step; the GRU takes the lengths directly, no packing) and the
    pooling ignores steps past each length.
    """

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, attention_size=None,
                 bidirectional=False, dropout=0.0, device=None, dtype=None, *, reset_after=True):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.encoder = GRU(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                           dropout=dropout, bidirectional=bidirectional, reset_after=reset_after, **factory)
        features = hidden_size * (2 if bidirectional else 1)
        self.pooling = AttentionPooling(features, attention_size or hidden_size, **factory)
        self.head = nn.Linear(features, output_size, **factory)

    def forward(self, x, lengths=None):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"x must be a tensor of shape (N, T, input_size), got {getattr(x, 'shape', type(x))}")
        h, _ = self.encoder(x, lengths=lengths)
        pooled, weights = self.pooling(h, lengths=lengths, need_weights=True)
        return self.head(pooled), weights
