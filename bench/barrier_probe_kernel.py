"""Kernels that only cross grid barriers: the per-step floor of the persistent GRU strategy, and
what each of its barrier variants costs. Benchmark-only (launched by bench/barrier_floor.py), so
they live here and not in fastgru.kernels.

Launched cooperatively with one program per peer, each runs ``N_STEPS`` barriers and nothing
else (WORK = 0); its time divided by N_STEPS is the latency one step can never beat on that GPU.
``barrier_variant_kernel`` uses the persistent kernel's own barrier (barrier_arrive /
barrier_wait of kernels/gru_common.py) in each of its forms:

  FLAGS    False: one int32 counter every program adds to; True: one int32 flag per program,
           every peer polling all of them;
  SPLIT    False: ``WORK`` dependent FMAs, then arrive and wait back to back (today's step: the
           work is on the critical path before the barrier); True: arrive, the same work, then
           wait (the split barrier: the work overlaps the peers' arrivals).

The work is register-only (nothing a peer reads), so the split form is correct by construction;
its result is stored so the compiler keeps it."""

import triton
import triton.language as tl

from fastgru.kernels.gru_common import barrier_arrive, barrier_wait, grid_barrier


@triton.jit
def barrier_loop_kernel(count_ptr, N_STEPS):
    n = tl.num_programs(0)
    for s in range(N_STEPS):
        grid_barrier(count_ptr, (s + 1) * n)


@triton.jit
def _work(acc, WORK):
    for _ in range(WORK):
        acc = acc * 0.999 + 1.0
    return acc


@triton.jit
def barrier_variant_kernel(group_ptr, out_ptr, N_STEPS, WORK, FLAGS: tl.constexpr, SPLIT: tl.constexpr,
                           BLOCK_P: tl.constexpr):
    i_n = tl.program_id(0)
    n_peers = tl.num_programs(0)
    acc = i_n.to(tl.float32)
    for s in range(N_STEPS):
        phase = s + 1
        if SPLIT:
            barrier_arrive(group_ptr, i_n, phase, FLAGS)
            acc = _work(acc, WORK)
        else:
            acc = _work(acc, WORK)
            barrier_arrive(group_ptr, i_n, phase, FLAGS)
        barrier_wait(group_ptr, n_peers, phase, FLAGS, BLOCK_P)
    tl.store(out_ptr + i_n, acc)
