"""The shared activations (kernels/activations.py): measured ulp bounds of the fp32 exp, sigmoid,
tanh and tanh's gradient against float64 numpy over dense grids, exp's ends (overflow,
subnormals, inf, NaN), fp64, and that none of them compiles to approximate PTX.

The interpreter runs the very formula the GPU runs (fma, integer and bit operations and IEEE
division, no tl.exp and no fp32 "/"), so these bounds are the compiled kernels' bounds. Triton
3.9's interpreter rounds tl.math.fma once, as the GPU does, so there the figures are bit for bit
the GPU's; Triton 3.6's rounds its product first, which costs exp up to 0.3 ulp more.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from fastgru.kernels import activations as act

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 1 << 16

# Measured maxima (ulp of the correctly rounded fp32 result) over grids of 2^22 points each
# (linspace and uniform): Triton 3.9 | 3.6. exp over [-103.9, 88.7]: 0.92 | 1.21; sigmoid over
# [-87, 40] (normal results): 2.48 | 2.48; tanh over [-40, 40]: 1.50 | 1.51; tanh's gradient: 4.04 | 4.04.
# The bounds add a few hundredths.
EXP_ULP = {True: 0.95, False: 1.25}  # by "the interpreter's fma rounds once"
SIGMOID_ULP = 2.5
TANH_ULP = 1.55
TANH_GRAD_ULP = 4.1


@triton.jit
def _apply(x, y, g, N, FN: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(x + o, mask=o < N)
    if FN == "exp":
        r = act.exp(v, False)
        d = r
    elif FN == "sigmoid":
        r = act.sigmoid(v, False)
        d = r
    elif FN == "fma":
        r = tl.math.fma(v, v, -1.0)
        d = r
    else:
        r, d = act.tanh_and_grad(v, False)
    tl.store(y + o, r, mask=o < N)
    tl.store(g + o, d, mask=o < N)


def run(fn: str, xs: np.ndarray):
    x = torch.from_numpy(np.ascontiguousarray(xs))
    y, g = torch.empty_like(x), torch.empty_like(x)
    _apply[(triton.cdiv(x.numel(), BLOCK),)](x, y, g, x.numel(), FN=fn, BLOCK=BLOCK)
    return y.numpy(), g.numpy()


def ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the fp32 spacing at ref (2^-149 among the subnormals)."""
    spacing = np.maximum(np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64), 2.0**-149)
    return np.abs(got.astype(np.float64) - ref) / spacing


def grid(lo: float, hi: float, n: int = 1 << 18, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.linspace(lo, hi, n, dtype=np.float32), rng.uniform(lo, hi, n).astype(np.float32)])


@pytest.fixture(scope="module")
def fma_rounds_once() -> bool:
    """(1 + 2^-12)^2 - 1 is 2^-11 + 2^-24 with one rounding, 2^-11 when the product rounds first."""
    y, _ = run("fma", np.array([1 + 2.0**-12], np.float32))
    return float(y[0]) != 2.0**-11


@pytest.mark.parametrize("lo, hi", [(-103.9, 88.7), (-1.0, 1.0), (-12.0, 12.0), (-87.5, -80.0), (80.0, 88.72)])
def test_exp_ulp_bound(lo, hi, fma_rounds_once):
    x = grid(lo, hi)
    y, _ = run("exp", x)
    err = ulps(y, np.exp(x.astype(np.float64)))
    assert err.max() <= EXP_ULP[fma_rounds_once], (err.max(), x[err.argmax()])


def test_exp_ends_are_those_of_exp():
    with np.errstate(over="ignore"):
        x = np.array([np.nan, np.inf, -np.inf, 88.72283, 88.7229, 89.0, 1e30, -87.33, -100.0, -103.97, -103.98,
                      -104.0, -1e30, 0.0, -0.0, 1e-30, -1e-30], np.float32)
        want = np.exp(x.astype(np.float64)).astype(np.float32)  # correctly rounded, subnormals included
    got, _ = run("exp", x)
    np.testing.assert_array_equal(got, want)
    assert np.isinf(got[[1, 4, 5, 6]]).all() and (got[[2, 10, 11, 12]] == 0).all()
    assert 0 < got[8] < np.finfo(np.float32).tiny and got[9] == np.float32(2.0**-149)  # subnormal results


def test_sigmoid_ulp_bound_and_ends():
    x = grid(-87.0, 40.0)  # sigmoid(-87) = 1.6e-38: normal results
    y, _ = run("sigmoid", x)
    err = ulps(y, 1.0 / (1.0 + np.exp(-x.astype(np.float64))))
    assert err.max() <= SIGMOID_ULP, (err.max(), x[err.argmax()])
    y, _ = run("sigmoid", np.array([np.inf, -np.inf, -89.0, -1e30, 1e30, 0.0, np.nan], np.float32))
    np.testing.assert_array_equal(y[:6], [1.0, 0.0, 0.0, 0.0, 1.0, 0.5])  # below -88.72: 0 (sigmoid < 3e-39)
    assert np.isnan(y[6])


def test_tanh_and_gradient_ulp_bounds():
    x = np.concatenate([grid(-40.0, 40.0), grid(-1.0, 1.0, seed=1), grid(-1e-3, 1e-3, seed=2)])
    t, g = run("tanh", x)
    xd = x.astype(np.float64)
    err = ulps(t, np.tanh(xd))
    assert err.max() <= TANH_ULP, (err.max(), x[err.argmax()])
    err = ulps(g, 1.0 / np.cosh(xd) ** 2)
    assert err.max() <= TANH_GRAD_ULP, (err.max(), x[err.argmax()])
    t, g = run("tanh", np.array([np.inf, -np.inf, 1e30, -1e30, 1e-30], np.float32))
    np.testing.assert_array_equal(t, np.array([1.0, -1.0, 1.0, -1.0, 1e-30], np.float32))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 0.0, 1.0])


def test_fp64_keeps_fp64_precision():
    x = np.linspace(-30.0, 30.0, 1 << 16)
    for fn, want in (("exp", np.exp(x)), ("sigmoid", 1.0 / (1.0 + np.exp(-x))), ("tanh", np.tanh(x))):
        y, _ = run(fn, x)
        np.testing.assert_allclose(y, want, rtol=1e-14, atol=0, err_msg=fn)


PTX_PROBE = r"""
import torch, triton, triton.language as tl
from bench.compile import driver
driver.install(90)
from bench.compile.ptxas import approx_ops
from fastgru.kernels import activations as act

@triton.jit
def probe(x, y, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    v = tl.load(x + o)
    t, g = act.tanh_and_grad(v, False)
    l = tl.load(x + BLOCK + o // 4)
    tl.store(y + o, act.exp(v, False) + act.sigmoid(v, False) + t + g + act.div(v, l, False))

@triton.jit
def probe_fast(x, y, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    v = tl.load(x + o)
    tl.store(y + o, act.sigmoid(v, True) + act.tanh(v, True))

found = {}
for dtype in (torch.float32, torch.float64):
    x, y = torch.empty(256, dtype=dtype), torch.empty(128, dtype=dtype)
    found[str(dtype)] = approx_ops(probe.warmup(x, y, BLOCK=128, grid=(1,)).asm["ptx"])
    found["fast " + str(dtype)] = approx_ops(probe_fast.warmup(x, y, BLOCK=128, grid=(1,)).asm["ptx"])
print(found)
"""


@pytest.mark.compile
def test_activations_compile_to_no_approximate_math(tmp_path):
    """What the interpreter cannot show: the compiled sm_90 PTX of exp, sigmoid, tanh, tanh's
    gradient and div, fp32 and fp64, has no approximate instruction (tl.exp and fp32 "/" would
    give ex2.approx.f32 and div.full.f32) unless FAST asks for the approximations."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGRU_BACKEND")}
    script = tmp_path / "probe.py"  # triton.jit reads its function's source from a file
    script.write_text(PTX_PROBE)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert found["torch.float32"] == {} and found["torch.float64"] == {}, found
    # FAST (the bf16/fp16 contract) really takes the compiled approximations in fp32; fp64 never does.
    assert "ex2.approx" in " ".join(found["fast torch.float32"]), found
    assert found["fast torch.float64"] == {}, found
