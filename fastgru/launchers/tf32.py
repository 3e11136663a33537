"""The one TF32 rule: an fp32 matmul may use TF32 exactly when the flag of the torch module it
replaces says so, on a device the kernels are compiled for.

nn.GRU follows ``torch.backends.cudnn.allow_tf32`` (``follows="cudnn"``); nn.GRUCell and the
matmul-based attention modules ``torch.backends.cuda.matmul.allow_tf32`` (``follows="matmul"``).
What a family does with that permission (plain TF32, or 3xTF32 for the GRU layer) is its own
choice, stated in its launcher. The rule lives with the launchers because they are what picks a
kernel's dot precision; the benchmarks and ``python -m fastgru`` ask it for their tolerances.
"""

from __future__ import annotations

import torch

from .. import gpu

FOLLOWS = ("cudnn", "matmul")


def tf32_allowed(t: torch.Tensor, follows: str) -> bool:
    """True when an fp32 matmul on ``t``'s device may use TF32 under the flag ``follows``
    ("cudnn" for the GRU layer, "matmul" for the cell and attention): fp32, compiled for a GPU
    (never under the interpreter, whose TF32 is plain fp32), and the flag set."""
    if follows not in FOLLOWS:
        raise ValueError(f"follows must be one of {FOLLOWS}, got {follows!r}")
    if t.dtype != torch.float32 or not gpu.on_gpu(t):
        return False
    flag = torch.backends.cudnn.allow_tf32 if follows == "cudnn" else torch.backends.cuda.matmul.allow_tf32
    return bool(flag)
