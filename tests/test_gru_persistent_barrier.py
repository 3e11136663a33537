"""The persistent strategy's grid barrier, executed in CI.

The dispatcher refuses several hidden blocks under the interpreter (its programs run one after
another, so the first to reach the barrier would wait forever). Here the plan is forced to
several hidden blocks (BLOCK_H 16, H = 40: three, the last partial), several batch blocks and
both directions, and the grid's programs run as concurrent threads (tests/concurrent_grid.py):
the forward and backward kernels, both formulations, against the float64 reference, with the
programs interleaved at every memory access (seeded) or each run as far as the barrier lets it.
Then the teeth: a barrier one phase short or skipped (in the forward alone, or in the backward
alone after a correct forward), either of reset_after=False's two barriers a step arriving
without waiting, and a target one phase too many must each fail: a wrong result, or the
deadlock detector, never a hang.
"""

import pytest
import torch
import triton
import triton.language as tl

from concurrent_grid import concurrent_grid, deadlock_in
from fastgru import backend, functional, reference
from fastgru.launchers import gru_layer
from fastgru.launchers import plan as planner
from fastgru.launchers.loader import kernels
from fastgru.kernels.gru_common import grid_barrier
from fastgru.testing import check_close

pytestmark = pytest.mark.skipif(not backend.INTERPRET, reason="runs the grid's programs as threads in the interpreter")

BLOCK_H = 16
BLOCK_B = 4


def force_multi_block(monkeypatch, launcher, block_h, block_b, family=None):
    """Every layer launch of ``launcher`` (launchers.gru_layer or lstm_layer) runs `persistent`
    with ``block_h`` hidden units and ``block_b`` batch rows per program, built by the planner's
    own helper; ``family``, where given, is the one the launcher must ask the planner for."""

    def plan_gru(B, H, D, device, strategy=None, dtype=torch.float32, resources=None, **kw):
        assert family is None or kw.get("family") == family, kw
        return planner._plan("persistent", B, H, block_b, block_h, planner._pow2(H), 4)

    monkeypatch.setattr(launcher, "plan_gru", plan_gru)


@pytest.fixture
def multi_block(monkeypatch):
    """Every GRU layer launch in the test runs `persistent` with BLOCK_H hidden units and BLOCK_B
    batch rows per program."""
    force_multi_block(monkeypatch, gru_layer, BLOCK_H, BLOCK_B)


def _weights(D, I, H):
    return [[(torch.randn(shape, dtype=torch.float64) * 0.4).requires_grad_() for shape in
             ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))] for _ in range(D)]


def _forward_backward(fn, x, h0, ws, lengths, between=None):
    out, h_n = fn(x, h0, ws, lengths)
    if between is not None:
        between()
    gen = torch.Generator().manual_seed(0)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    loss = loss + (h_n * torch.randn(h_n.shape, generator=gen, dtype=h_n.dtype)).sum()
    return [out, h_n, *torch.autograd.grad(loss, [x, h0, *(t for w in ws for t in w)])]


def run_layer(T, B, I, H, D, lengths, reset_after, policy="random", seed=0, timeout=120.0, between=None):
    """One layer through the persistent kernels (forward, then backward; ``between`` is called
    between them), its programs concurrent; each result and every gradient checked against the
    float64 reference. Returns the GridLog."""
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(D, B, H, dtype=torch.float64, requires_grad=True)
    ws = _weights(D, I, H)

    def ours(x, h0, ws, lengths):
        return functional.gru(x, h0, ws, 1, D == 2, False, lengths=lengths, strategy="persistent",
                              reset_after=reset_after)

    def ref(x, h0, ws, lengths):
        return reference.gru(x, h0, ws, 1, D == 2, lengths, reset_after=reset_after)

    with concurrent_grid(policy, seed, timeout) as log:
        got = _forward_backward(ours, x, h0, ws, lengths, between)
    want = _forward_backward(ref, x, h0, ws, lengths)
    names = ["out", "h_n", "dx", "dh0"] + [f"d{n}[{d}]" for d in range(D) for n in ("w_ih", "w_hh", "b_ih", "b_hh")]
    for name, a, b in zip(names, got, want, strict=True):
        check_close(a, b, torch.float64, name=name)
    return log


def expect_protocol(log, family, T, B, H, D, phases, block_h=BLOCK_H, block_b=BLOCK_B):
    """Both launches ran the multi-block grid (``family``'s persistent forward, then its
    backward), waited at their barriers, and every (batch block, direction) counter saw T steps x
    ``phases`` x hidden blocks arrivals."""
    hidden, batch = -(-H // block_h), -(-B // block_b)
    grid = (hidden, batch, D)
    assert [(r.name, r.grid) for r in log.launches] == [
        (f"{family}_fwd_persistent_kernel", grid), (f"{family}_bwd_persistent_kernel", grid)]
    for r in log.launches:
        assert r.polls > 0 and r.switches > 0
        assert sorted(r.arrivals.values()) == [T * phases * hidden] * (batch * D), r.arrivals


LENGTHS = [5, 2, 4, 5, 1, 3]  # B = 6: batch blocks of 4 and 2 rows, rows ending at different steps


@pytest.mark.parametrize("policy", ["random", "sequential"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_multi_block_persistent_matches_reference(multi_block, reset_after, policy):
    T, B, H, D = 5, len(LENGTHS), 40, 2
    log = run_layer(T, B, 3, H, D, torch.tensor(LENGTHS), reset_after, policy)
    expect_protocol(log, "gru", T, B, H, D, 1 if reset_after else 2)


@pytest.mark.slow
@pytest.mark.parametrize("policy,seed", [("random", 1), ("reverse", 0)])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_multi_block_persistent_more_blocks(multi_block, reset_after, policy, seed):
    # H = 48: three full hidden blocks; B = 11: three batch blocks; other interleavings.
    T, B, H, D = 4, 11, 48, 2
    log = run_layer(T, B, 2, H, D, torch.randint(1, T + 1, (B,)), reset_after, policy, seed)
    expect_protocol(log, "gru", T, B, H, D, 1 if reset_after else 2)


# -- teeth: a broken barrier must fail ---------------------------------------------------------------

@triton.jit
def _meet_one_phase_short(p_count, arrivals, n_peers):
    grid_barrier(p_count, arrivals - n_peers)


@triton.jit
def _meet_skipped(p_count, arrivals, n_peers):
    tl.debug_barrier()


@triton.jit
def _meet_one_phase_more(p_count, arrivals, n_peers):
    grid_barrier(p_count, arrivals + n_peers)


@triton.jit
def _meet_odd_phases_unwaited(p_count, arrivals, n_peers):
    # Two phases a step, the first's barrier arrives but does not wait: reset_after=False's forward
    # reset phase and backward gates phase; with an LSTM projection, the forward's barrier before
    # the projection phase and the backward's after the gates phase.
    if (arrivals // n_peers) % 2 == 1:
        grid_barrier(p_count, 0)
    else:
        grid_barrier(p_count, arrivals)


@triton.jit
def _meet_even_phases_unwaited(p_count, arrivals, n_peers):
    # Two phases a step, the second's barrier arrives but does not wait: reset_after=False's forward
    # step end and backward reset phase; with an LSTM projection, each step's closing barrier
    # (forward and backward).
    if (arrivals // n_peers) % 2 == 0:
        grid_barrier(p_count, 0)
    else:
        grid_barrier(p_count, arrivals)


def _broken_barriers():
    """(kernel whose barrier breaks, the broken _meet, the policy): each break in each kernel under
    one policy; the backward's also under the other (slow)."""
    for kernel in ("forward", "backward"):
        for broken, policy, other in ((_meet_one_phase_short, "sequential", "random"),
                                      (_meet_skipped, "random", "sequential")):
            name = broken.__name__.removeprefix("_meet_")
            yield pytest.param(kernel, broken, policy, id=f"{kernel}-{name}-{policy}")
            if kernel == "backward":
                yield pytest.param(kernel, broken, other, id=f"{kernel}-{name}-{other}", marks=pytest.mark.slow)


@pytest.mark.parametrize("kernel,broken,policy", list(_broken_barriers()))
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_a_broken_barrier_gives_a_wrong_result(multi_block, monkeypatch, reset_after, kernel, broken, policy):
    """The forward's barrier broken: the outputs are wrong. The backward's alone (installed after
    a correct forward): the outputs pass and a gradient is wrong."""
    _expect_wrong_with(monkeypatch, broken, kernel, 4, reset_after, policy)


@pytest.mark.parametrize("kernel", ["forward", "backward"])
@pytest.mark.parametrize("broken", [_meet_odd_phases_unwaited, _meet_even_phases_unwaited], ids=["odd", "even"])
def test_each_barrier_of_a_two_phase_step_is_needed(multi_block, monkeypatch, broken, kernel):
    """reset_after=False meets twice a step: without either wait alone the result is wrong."""
    _expect_wrong_with(monkeypatch, broken, kernel, 3, False, "sequential")


def _expect_wrong_with(monkeypatch, broken, kernel, T, reset_after, policy):
    """Run T steps with the kernel module's ``_meet`` replaced by ``broken``: from the start
    (kernel "forward": an output is wrong) or only after a correct forward ("backward": the
    outputs pass and a gradient is wrong)."""
    between, first_wrong = break_meet(monkeypatch, broken, kernel, ("out", "h_n"))
    with pytest.raises(AssertionError, match=first_wrong):
        run_layer(T, len(LENGTHS), 3, 40, 2, torch.tensor(LENGTHS).clamp(max=T), reset_after, policy,
                  between=between)


def break_meet(monkeypatch, broken, kernel, outputs):
    """Replace the persistent kernels' ``_meet`` (the counter barrier every GRU and LSTM barrier
    goes through) by ``broken``: now for kernel "forward", or for "backward" by the returned
    ``between`` (to call between a correct forward and the backward; None for "forward"). Returns
    (between, the pattern of the first wrong result's error: one of ``outputs`` for the forward,
    a gradient for the backward)."""
    module = kernels("gru_persistent")

    def breaks():
        monkeypatch.setattr(module, "_meet", broken)

    if kernel == "forward":
        breaks()
        return None, f"^({'|'.join(outputs)}): relative error"
    return breaks, "^d.*: relative error"


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_a_barrier_waiting_too_long_is_a_detected_deadlock(multi_block, monkeypatch, reset_after):
    monkeypatch.setattr(kernels("gru_persistent"), "_meet", _meet_one_phase_more)
    with pytest.raises(Exception) as info:
        run_layer(2, len(LENGTHS), 3, 40, 2, torch.tensor(LENGTHS).clamp(max=2), reset_after, timeout=60.0)
    dead = deadlock_in(info.value)
    assert dead is not None and "all wait" in str(dead), repr(info.value)


# -- the helper itself ---------------------------------------------------------------------------------

@triton.jit
def _exchange_kernel(src_ptr, dst_ptr, count_ptr, ROUNDS: tl.constexpr, BARRIER: tl.constexpr):
    """Each program writes its id + round into its slot, meets the others, then copies its left
    neighbour's slot: correct only if every program's write of this round precedes every read."""
    i = tl.program_id(0)
    n = tl.num_programs(0)
    for r in range(ROUNDS):
        tl.store(src_ptr + i, i + 100 * r)
        if BARRIER:
            grid_barrier(count_ptr, (2 * r + 1) * n)
        tl.store(dst_ptr + r * n + i, tl.load(src_ptr + (i + n - 1) % n))
        if BARRIER:
            grid_barrier(count_ptr, (2 * r + 2) * n)


def _exchange_buffers(n, rounds):
    """src, dst and the counter of _exchange_kernel, and the dst a correct barrier gives."""
    src, count = torch.zeros(n, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    dst = torch.full((rounds * n,), -1, dtype=torch.int32)
    expect = torch.tensor([(i - 1) % n + 100 * r for r in range(rounds) for i in range(n)], dtype=torch.int32)
    return src, dst, count, expect


@pytest.mark.parametrize("policy", ["random", "sequential", "reverse"])
def test_concurrent_grid_runs_programs_that_wait_for_each_other(policy):
    n, rounds = 5, 3
    src, dst, count, expect = _exchange_buffers(n, rounds)
    with concurrent_grid(policy, seed=7) as log:
        _exchange_kernel[(n,)](src, dst, count, ROUNDS=rounds, BARRIER=True)
    assert torch.equal(dst, expect)
    assert count.item() == 2 * rounds * n and log.launches[0].polls > 0


def test_concurrent_grid_exposes_a_missing_barrier():
    n, rounds = 5, 3
    src, dst, count, expect = _exchange_buffers(n, rounds)
    with concurrent_grid("reverse") as log:
        _exchange_kernel[(n,)](src, dst, count, ROUNDS=rounds, BARRIER=False)
    assert not torch.equal(dst, expect) and log.launches[0].polls == 0  # program n-1 read slot n-2 too early
