"""fastgru: fused Triton kernels for GRUs and attention, a drop-in for torch.nn.GRU."""

from . import backend, reference, testing

__version__ = "0.1.0"

__all__ = ["backend", "reference", "testing"]
