"""The documented bound of the fp16 recurrent-gradient matmul (DECISIONS 26, hazard 7).

With bf16/fp16 weights the GRU backward's carry (dh_{t-1} += dgh W_hh) runs gru_common.dot_acc
with MMA_LOWP: the fp32 gate gradients dgh are rounded to the weights' dtype, and the tensor
cores multiply them exactly and add in fp32. In fp16 that rounding is what limits the result:
relative error below 2.5e-4 while the gradients lie in fp16's normal range [6.1e-5, 65504] (rms
1e-4 to 1e4); below it the subnormals keep an absolute 2^-25, so the error grows as the gradients
shrink (1.8e-2 at rms 1e-6), and below 3e-8 every element flushes to zero; above 65504 an element becomes inf, and
so does every output it touches. bf16 has fp32's range: 1.7e-3 at every scale.

The interpreter runs dot_acc's fp16 path as the GPU does (numpy's fp16 rounding, fp32 matmul
of the exact products), so the fp16 figures here are measured on the kernels' own helper; bf16
is emulated with torch (the interpreter truncates fp32 to bf16 where the GPU rounds).
"""

import pytest
import torch
import triton
import triton.language as tl

from fastgru.kernels.gru_common import dot_acc

BB, BK, BN = 16, 256, 64
FP16_NORMAL_MIN = 2.0**-14  # 6.1e-5
FP16_MAX = 65504.0

# Measured ||dgh W - ref|| / ||ref|| (ref: float64 of the same fp16 weights), dgh ~ scale * N(0, 1),
# (16, 256) @ (256, 64): scales 1e-2 .. 1e4: at most 2.2e-4 (20 seeds), 1e-4: 2.45e-4 (half the
# elements subnormal); 1e-5: 1.7e-3; 1e-6: 1.8e-2; 1e-7: 0.17; 1e-9: 1 (all zero); 3e4 and above:
# not finite. bf16 (emulated): 1.6e-3 .. 1.8e-3 at every scale.
FP16_NORMAL_RANGE_REL = 2.5e-4
BF16_REL = 2.0e-3


@triton.jit
def _carry_matmul(g, w, out, BB: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr):
    """out = g @ w through dot_acc with MMA_LOWP: g fp32 (BB, BK), w fp16 (BK, BN)."""
    o_b, o_k, o_n = tl.arange(0, BB), tl.arange(0, BK), tl.arange(0, BN)
    a = tl.load(g + o_b[:, None] * BK + o_k[None, :])
    b = tl.load(w + o_k[:, None] * BN + o_n[None, :])
    acc = dot_acc(a, b, tl.zeros((BB, BN), tl.float32), True, "ieee")
    tl.store(out + o_b[:, None] * BN + o_n[None, :], acc)


def carry(g: torch.Tensor, w16: torch.Tensor) -> torch.Tensor:
    out = torch.empty(g.shape[0], w16.shape[1], dtype=torch.float32)
    _carry_matmul[(1,)](g.contiguous(), w16.contiguous(), out, BB=BB, BK=BK, BN=BN)
    return out


def rel_error(got: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> float:
    ref = g.double() @ w.double()
    return ((got.double() - ref).norm() / ref.norm()).item()


@pytest.fixture
def operands():
    gen = torch.Generator().manual_seed(0)
    w16 = (torch.randn(BK, BN, generator=gen) / BK**0.5).half()
    g = torch.randn(BB, BK, generator=gen)
    return g, w16


def test_kernel_helper_is_round_to_fp16_then_fp32_matmul(operands):
    g, w16 = operands
    for scale in (1e-7, 1.0, 1e3):
        emulated = (g * scale).half().float() @ w16.float()
        # equal but for the fp32 summation order
        torch.testing.assert_close(carry(g * scale, w16), emulated, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 1e2, 1e3])
def test_fp16_normal_range_error_bound(operands, scale):
    g, w16 = operands
    g = g * scale
    assert (g.abs() >= FP16_NORMAL_MIN).float().mean() > 0.4 and g.abs().max() < FP16_MAX
    assert rel_error(carry(g, w16), g, w16) <= FP16_NORMAL_RANGE_REL


def test_fp16_below_the_normal_range_loses_precision_then_flushes(operands):
    g, w16 = operands
    errors = {s: rel_error(carry(g * s, w16), g * s, w16) for s in (1e-5, 1e-6, 1e-7)}
    assert 1e-3 < errors[1e-5] < 3e-3 and 1e-2 < errors[1e-6] < 3e-2 and 0.1 < errors[1e-7] < 0.3, errors
    assert (carry(g * 3e-9, w16) == 0).all()  # every |dgh| < 2^-25 = 3e-8 rounds to zero


def test_fp16_above_65504_is_not_finite(operands):
    g, w16 = operands
    g = g.clone()
    g[3, 7] = 7e4  # one element past fp16's largest finite value
    out = carry(g, w16)
    assert not out[3].isfinite().any() and out[torch.arange(BB) != 3].isfinite().all()


@pytest.mark.parametrize("scale", [1e-10, 1e-6, 1.0, 1e6])
def test_bf16_keeps_fp32_range(operands, scale):
    g, w16 = operands
    w = w16.bfloat16()
    g = g * scale
    got = g.bfloat16().float() @ w.float()  # dot_acc's bf16 path, emulated
    assert rel_error(got, g, w) <= BF16_REL
