"""The small query blocks of the additive score (BLOCK_Q 1..8, no tl.dot) stay without tl.dot
when compiled for sm_90: every tl.dot in the compiled attention kernels has K >= 16.

Triton's combine pass rewrites sum(a[:, :, None] * b[None, :, :], axis=1) with M, N >= 16 into
a tl.dot of any K. Triton 3.6 (the GPU machines' version) makes that a TF32 mma.sync m16n8k8
that fills its 8 K slots with copies of the K < 8 operand: the key-block backward's
p_v^T dO ([BT, BQ] @ [BQ, BD]) at BLOCK_Q < 16 was such a product, and the dvalues came out
wrong, the 2026-11-23 failure of every pooling test on an H100 (bench/NOTES.md). The
interpreter never runs the combine pass, so only a compile shows it.

The compile runs in a fresh interpreter (the stand-in driver must be set before any kernel is
imported, and this suite runs with TRITON_INTERPRET=1), through the real launcher with exactly
one configuration. Deselect with ``-m "not compile"``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.compile

# tt.dot %a, %b, %c ... : tensor<MxKx...> * tensor<KxNx...> -> ...
_DOT = re.compile(r"tt\.dot .*?: tensor<(\d+)x(\d+)x[^>]*> \* tensor<(\d+)x(\d+)x")


def small_dots(ttir: str) -> list:
    """The (M, K, N) of every tl.dot in ``ttir`` whose K is below 16."""
    return [(int(m), int(k), int(n)) for m, k, _, n in _DOT.findall(ttir) if int(k) < 16]


def test_small_dots_finds_a_k1_dot():
    line = "%7 = tt.dot %5, %6, %4, inputPrecision = tf32 : tensor<64x1xf32> * tensor<1x64xf32> -> tensor<64x64xf32>"
    assert small_dots(line) == [(64, 1, 64)]
    assert small_dots(line.replace("64x1x", "64x16x").replace("<1x64", "<16x64")) == []


@pytest.mark.parametrize("bq", (1, 8))
def test_broadcast_products_compile_without_dot(bq):
    """fp32 compute (bf16 inputs), the additive score at a query block below 16, every kernel:
    no tl.dot with K < 16 in the TTIR (after the combine pass)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGRU_BACKEND")}
    done = subprocess.run([sys.executable, __file__, str(bq)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    dots = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(dots) == {"attention_fwd", "attention_bwd_dq", "attention_bwd_dkv"}, dots
    assert all(not found for found in dots.values()), dots


def _compile(bq: int) -> dict:
    """Compile the three attention kernels for sm_90 at one additive configuration with query
    block ``bq`` (key block 64, value block 64: M and N of p_v^T dO >= 16); {kernel: small dots}."""
    sys.path.insert(0, str(ROOT))
    from bench.compile import driver

    driver.install(90)
    import torch
    import triton

    from fastgru import gpu
    from fastgru.launchers import attention as AA
    from fastgru.launchers import launch as L
    from fastgru.kernels import attention_configs as C

    cfg = triton.Config(dict(zip(C.BLOCKS, (bq, 64, 16, 64))), num_warps=4, num_stages=2)
    found = {}

    class Target:
        def launch(self, job):
            grid = job.grid(cfg.kwargs) if callable(job.grid) else job.grid
            compiled = L.untuned(job.kernel).warmup(*job.args, grid=grid, **job.meta, **cfg.all_kwargs())
            found[job.name] = small_dots(compiled.asm["ttir"])

        def resources(self, job):
            return None

    N, Tq, T, F, D = 2, bq, 128, 32, 64
    z = lambda *s, dt=torch.bfloat16: torch.zeros(s, dtype=dt)  # noqa: E731
    lengths = torch.full((N,), T, dtype=torch.int64)
    with gpu.assume_gpu(132), L.compiling(Target()):
        AA.attention_forward("additive", z(N, Tq, F), z(N, T, F), z(F), z(N, T, D), lengths, None, 1.0, True)
        AA.attention_backward("additive", z(N, Tq, F), z(N, T, F), z(F), z(N, T, D), lengths, None, 1.0,
                              z(N, 2, Tq, dt=torch.float32), z(N, Tq, D), z(N, Tq, T, dt=torch.float32), True)
    return found


if __name__ == "__main__":
    print(json.dumps(_compile(int(sys.argv[1]))))
