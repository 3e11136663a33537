"""fastgru: fused Triton kernels for GRUs and attention, a drop-in for torch.nn.GRU."""

from . import backend, functional, reference, testing
from .gru import GRU, GRUCell, convert

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "convert", "backend", "functional", "reference", "testing"]
