"""The numerics contract (docs/architecture.md, section 7) in one place: used by the tests and the benchmarks.

Error is measured as ||out - ref|| / ||ref|| against a float64 reference. It must stay under the
dtype's limit, and -- when PyTorch's own result in the same dtype is given -- no worse than
``BASELINE_FACTOR`` times PyTorch's error (with a floor of a few ulps, so that a baseline that is
exact by luck cannot fail a result that is accurate to the last bit).
"""

from __future__ import annotations

import torch

LIMITS = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    "tf32": 5e-3,
    torch.bfloat16: 2e-2,
    torch.float16: 2e-2,
}
BASELINE_FACTOR = 2.0
_ULP_FLOOR = 4.0


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (the absolute norm when ref is all zeros). NaN stays NaN."""
    if out.shape != ref.shape:
        raise ValueError(f"rel_error: shapes differ, out {tuple(out.shape)} vs ref {tuple(ref.shape)}")
    out = out.detach().to(torch.float64).cpu()
    ref = ref.detach().to(torch.float64).cpu()
    diff = torch.linalg.vector_norm(out - ref).item()
    scale = torch.linalg.vector_norm(ref).item()
    return diff / scale if scale > 0 else diff


def tolerance(dtype: torch.dtype, tf32: bool = False) -> float:
    """The contract's relative-error limit for results computed in ``dtype``."""
    if tf32 and dtype == torch.float32:
        return LIMITS["tf32"]
    return LIMITS[dtype]


def check_close(out, ref, dtype=None, *, tf32=False, baseline=None, name="output") -> float:
    """Assert ``out`` meets the contract against the float64 ``ref``; return the error.

    ``baseline``: PyTorch's own result for the same inputs in the same dtype (optional).
    """
    dtype = dtype or out.dtype
    err = rel_error(out, ref)
    limit = tolerance(dtype, tf32)
    if not err <= limit:
        raise AssertionError(f"{name}: relative error {err:.3e} exceeds the {dtype} limit {limit:.1e}")
    if baseline is not None:
        base_err = rel_error(baseline, ref)
        floor = _ULP_FLOOR * torch.finfo(dtype).eps
        bound = BASELINE_FACTOR * max(base_err, floor)
        if not err <= bound:
            raise AssertionError(
                f"{name}: relative error {err:.3e} is worse than {BASELINE_FACTOR}x PyTorch's "
                f"own error {base_err:.3e} in {dtype}"
            )
    return err
