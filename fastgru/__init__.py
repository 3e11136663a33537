"""fastgru: fused Triton kernels for GRUs and attention, a drop-in for torch.nn.GRU."""

from . import backend, functional, reference, testing
from .gru import GRU, GRUCell, convert

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "convert", "backend", "functional", "reference", "testing"]

# Attention (DESIGN.md section 4) and the model built on it.
from .attention import AdditiveAttention, AttentionPooling, DotAttention  # noqa: E402
from .attention_functional import additive_attention, attention_pooling, dot_attention  # noqa: E402
from .models import GRUAttention  # noqa: E402

__all__ += [
    "AttentionPooling", "AdditiveAttention", "DotAttention", "GRUAttention",
    "attention_pooling", "additive_attention", "dot_attention",
]
