"""A kernel that only crosses grid barriers: the per-step floor of the persistent GRU strategy.
Benchmark-only (launched by bench/barrier_floor.py), so it lives here and not in fastgru.kernels.

Launched with the persistent kernel's grid shape, it runs ``N_STEPS`` barriers and nothing else;
its time divided by N_STEPS is the latency one step can never beat on that GPU."""

import triton
import triton.language as tl

from fastgru.kernels.gru_common import grid_barrier


@triton.jit
def barrier_loop_kernel(count_ptr, N_STEPS):
    n = tl.num_programs(0)
    for s in range(N_STEPS):
        grid_barrier(count_ptr, (s + 1) * n)
