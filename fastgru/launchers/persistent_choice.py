"""The persistent kernel's choices beyond a plan's shape: its step variant (``PersistentVariant``),
the hidden block sizes a persistent program may take, and what a measured table entry or a
benchmark forces (``PersistentChoice``).

Its own module because both the planner (plan.py) and the measured table (plan_table.py, which
checks an entry's choice when it loads and prints it) read it, and the planner reads the table:
here, below both, neither reaches back into the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Hidden-block sizes a persistent program may take, in the order tried. 64 puts a whole wgmma
# tile (M = 64 per warpgroup) on Hopper's tensor cores; 32 and 16 (mma.sync) spread the weights
# over more SMs where a 64-unit slice does not fit. The first whose compiled kernel fits wins.
PERSISTENT_BLOCK_H = (64, 32, 16)


# The persistent kernel's step variants (PersistentVariant's switches, in name order).
VARIANT_SWITCHES = ("prefetch", "split", "flags", "recompute")
VARIANT_PRECISIONS = ("tf32", "tf32x3")


@dataclass(frozen=True)
class PersistentVariant:
    """How the persistent kernel runs a step; the default is the kernel as it always ran.

    prefetch   the input projection gx of step t+1 is loaded before step t's closing barrier, so
               only the state exchange follows it;
    split      the barrier is split into arrive and wait: a program arrives as soon as its new
               state is stored, then writes the output and what backward saves (and, with
               prefetch, loads the next gx), and only then waits for its peers;
    flags      one arrival flag per program, polled by every peer, instead of one counter per
               (batch block, direction) that every program increments;
    recompute  reset_after=False only: one barrier a step instead of two, every program
               recomputing the reset gate of all units (W_hr streamed from L2) rather than
               waiting for its peers' r * h;
    precision  fp32 only: the tensor-core precision of the recurrent matmul where the TF32 rule
               allows TF32, "tf32" (plain) or "tf32x3" (the default: fp32-level error).

    The backward kernel takes ``flags`` (its barrier); the other switches are the forward's.
    ``name`` is the variant's one-string form ("base", "prefetch+split", "flags+tf32", ...), the
    form the benchmarks and the measured table use; ``parse`` reads it back."""

    prefetch: bool = False
    split: bool = False
    flags: bool = False
    recompute: bool = False
    precision: str | None = None

    def __post_init__(self):
        if self.precision not in (None, *VARIANT_PRECISIONS):
            raise ValueError(f"precision must be one of {VARIANT_PRECISIONS} or None, got {self.precision!r}")

    @property
    def name(self) -> str:
        parts = [s for s in VARIANT_SWITCHES if getattr(self, s)] + ([self.precision] if self.precision else [])
        return "+".join(parts) or "base"

    @classmethod
    def parse(cls, name: str) -> "PersistentVariant":
        """The variant named ``name`` ("base" or switches and at most one precision joined by "+")."""
        if name == "base":
            return cls()
        kw: dict = {}
        for part in name.split("+"):
            if part in VARIANT_SWITCHES and part not in kw:
                kw[part] = True
            elif part in VARIANT_PRECISIONS and "precision" not in kw:
                kw["precision"] = part
            else:
                raise ValueError(
                    f"variant {name!r}: expected 'base' or a '+'-joined set of {VARIANT_SWITCHES} and at most one of "
                    f"{VARIANT_PRECISIONS}, got part {part!r}")
        return cls(**kw)

    def check(self, dtype: torch.dtype, reset_after: bool) -> None:
        """ValueError where this variant means nothing for the call: recompute with reset_after=True,
        a precision for a dtype other than fp32."""
        if self.recompute and reset_after:
            raise ValueError("variant 'recompute' applies to reset_after=False only (reset_after=True has one barrier a step)")
        if self.precision is not None and dtype != torch.float32:
            raise ValueError(f"variant precision {self.precision!r} applies to float32 only, got {dtype}")

    def forward_meta(self) -> dict:
        """The forward kernel's constexprs for this variant."""
        return {"PREFETCH_GX": self.prefetch, "SPLIT_BARRIER": self.split, "BARRIER_FLAGS": self.flags,
                "RECOMPUTE_RESET": self.recompute}

    def backward_meta(self) -> dict:
        """The backward kernel's constexprs for this variant."""
        return {"BARRIER_FLAGS": self.flags}


BASE_VARIANT = PersistentVariant()


@dataclass(frozen=True)
class PersistentChoice:
    """What a persistent plan runs beyond its shape: the step variant, and where given the one
    hidden block size and the forward's warp count to take (None: the candidates' order decides)."""

    variant: PersistentVariant = BASE_VARIANT
    block_h: int | None = None
    num_warps: int | None = None

    def __str__(self) -> str:
        extra = [f"BLOCK_H={self.block_h}"] * (self.block_h is not None) + [f"{self.num_warps} warps"] * (
            self.num_warps is not None)
        return ", ".join([f"variant {self.variant.name}", *extra])

    @classmethod
    def of_entry(cls, entry: dict) -> "PersistentChoice":
        """The choice a measured table entry names (its optional variant, block_h, num_warps)."""
        return cls(PersistentVariant.parse(entry.get("variant", "base")), entry.get("block_h"), entry.get("num_warps"))


DEFAULT_CHOICE = PersistentChoice()
