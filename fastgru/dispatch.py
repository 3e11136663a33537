"""Which recurrence strategy and block sizes run a GRU layer of a given shape.

  rows       grid (batch blocks, D). One program owns whole rows of the batch and all of H for the
             whole sequence: no cross-program sync. Wins when there are enough batch blocks to
             fill the GPU, or H is small.
  stepwise   grid (batch blocks, hidden blocks, D), one launch per step (two per step backward).
             Spreads a small batch with a large H over the GPU at the price of T launches.

Under the interpreter programs run one after another, so one program per batch block with the
whole of H in a single tile is cheapest, and tiles need not meet tensor-core minimums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import backend

STRATEGIES = ("rows", "stepwise")


@dataclass(frozen=True)
class GRUPlan:
    strategy: str
    block_b: int
    block_h: int
    block_k: int
    batch_blocks: int
    hidden_blocks: int
    num_warps: int

    def blocks(self) -> dict:
        return {"BLOCK_B": self.block_b, "BLOCK_H": self.block_h, "BLOCK_K": self.block_k}


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def plan_gru(B: int, H: int, D: int, device, strategy: str | None = None) -> GRUPlan:
    """Strategy and tile sizes for batch B, hidden H, D directions on ``device``.
    ``strategy`` forces a choice (benchmarks, tests); None picks by shape."""
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {strategy!r}")
    device = torch.device(device)
    if backend.INTERPRET or device.type != "cuda":
        block_b = min(_pow2(max(B, 1)), 16)
        block_h = min(_pow2(H), 64)
        strategy = strategy or "rows"
        num_warps = 4
    else:
        # Tensor-core tiles need M, N, K >= 16.
        block_b = 16 if B <= 16 else 32
        block_h = max(16, min(_pow2(H), 64))
        batch_blocks = -(-B // block_b)
        if strategy is None:
            # rows keeps everything in one launch but uses only batch_blocks * D programs; when
            # that leaves most SMs idle and H is large, stepwise's parallelism over H pays for
            # its T launches.
            idle = batch_blocks * D * 4 < _sm_count(device)
            strategy = "stepwise" if idle and H >= 256 else "rows"
        num_warps = 4 if block_b * block_h <= 1024 else 8
    return GRUPlan(
        strategy=strategy,
        block_b=block_b,
        block_h=block_h,
        block_k=block_h,
        batch_blocks=-(-B // block_b),
        hidden_blocks=-(-H // block_h),
        num_warps=num_warps,
    )
