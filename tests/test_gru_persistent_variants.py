"""The persistent kernel's step variants (plan.PersistentVariant), executed in CI.

Each variant runs the multi-block grid of tests/test_gru_persistent_barrier.py (BLOCK_H 16,
H = 40: three hidden blocks, the last partial; two batch blocks; rows ending at different steps)
with its programs as concurrent threads, forward and backward against the float64 reference.
Then the teeth: the flags barrier with a wait that looks at the wrong flags, and the split
barrier without its wait, must each give a wrong result; and a variant that cannot apply to a
call (a precision without TF32, 'recompute' with reset_after=True) is refused with a ValueError
that reaches the caller of functional.gru, never silently ignored.
"""

import dataclasses
import re

import pytest
import torch
import triton
import triton.language as tl

from concurrent_grid import concurrent_grid
from fastgru import backend, functional, reference
from fastgru.launchers import gru_layer
from fastgru.launchers import plan as planner
from fastgru.launchers.loader import kernels
from fastgru.testing import check_close
from test_gru_persistent_barrier import BLOCK_B, BLOCK_H, LENGTHS, run_layer

pytestmark = pytest.mark.skipif(not backend.INTERPRET, reason="runs the grid's programs as threads in the interpreter")

T, H = 3, 40
HIDDEN_BLOCKS = -(-H // BLOCK_H)


def _force(monkeypatch, name):
    """Every GRU layer launch in the test runs `persistent`, BLOCK_H hidden units and BLOCK_B
    rows per program, with the variant ``name``."""
    variant = planner.PersistentVariant.parse(name)

    def plan_gru(B, H, D, device, strategy=None, dtype=torch.float32, resources=None, **kw):
        plan = planner._plan("persistent", B, H, BLOCK_B, BLOCK_H, planner._pow2(H), 4)
        return dataclasses.replace(plan, variant=variant)

    monkeypatch.setattr(gru_layer, "plan_gru", plan_gru)


def _run(monkeypatch, name, reset_after, D=1, policy="random"):
    """Forward and backward of the variant ``name``, checked against the float64 reference."""
    _force(monkeypatch, name)
    lengths = torch.tensor(LENGTHS).clamp(max=T)
    return run_layer(T, len(LENGTHS), 3, H, D, lengths, reset_after, policy)


def _forward(monkeypatch, name, reset_after, policy="sequential"):
    """The forward alone of the variant ``name`` (one batch block, one direction) against the
    float64 reference."""
    _force(monkeypatch, name)
    B = BLOCK_B
    x, h0 = torch.randn(T, B, 3, dtype=torch.float64), torch.randn(1, B, H, dtype=torch.float64)
    ws = [[torch.randn(shape, dtype=torch.float64) * 0.4 for shape in ((3 * H, 3), (3 * H, H), (3 * H,), (3 * H,))]]
    lengths = torch.tensor(LENGTHS[:B]).clamp(max=T)
    with concurrent_grid(policy):
        got = functional.gru(x, h0, ws, 1, False, False, lengths=lengths, strategy="persistent", reset_after=reset_after)
    want = reference.gru(x, h0, ws, 1, False, lengths, reset_after=reset_after)
    for label, a, b in zip(("out", "h_n"), got, want):
        check_close(a, b, torch.float64, name=label)


# Each switch, both formulations, both directions; the fast set covers every switch once.
VARIANTS = [  # (name, reset_after, directions, slow)
    ("prefetch+split+flags", True, 1, False),
    ("flags", False, 1, False),
    ("prefetch+split+flags+recompute", False, 1, False),
    ("prefetch", True, 1, True),
    ("split", True, 1, True),
    ("split", False, 1, True),
    ("flags", True, 2, True),
    ("prefetch+split+flags", False, 2, True),
    ("recompute", False, 1, True),
    ("prefetch+recompute", False, 2, True),
]


@pytest.mark.parametrize("name,reset_after,D", [
    pytest.param(n, r, d, id=f"{n}-{'after' if r else 'before'}-D{d}", marks=[pytest.mark.slow] if slow else [])
    for n, r, d, slow in VARIANTS])
def test_variant_matches_reference(monkeypatch, name, reset_after, D):
    log = _run(monkeypatch, name, reset_after, D)
    assert [(r.name, r.grid) for r in log.launches] == [
        ("gru_fwd_persistent_kernel", (HIDDEN_BLOCKS, 2, D)), ("gru_bwd_persistent_kernel", (HIDDEN_BLOCKS, 2, D))]
    for r in log.launches:
        assert r.polls > 0 and r.switches > 0  # the programs did wait for each other
    phases = 1 if reset_after or "recompute" in name else 2
    fwd_arrivals = sorted(log.launches[0].arrivals.values())
    # The counter barrier counts its arrivals (one add a program and phase); the flags' stores are no adds.
    assert fwd_arrivals == ([] if "flags" in name else [T * phases * HIDDEN_BLOCKS] * (2 * D)), fwd_arrivals


# -- teeth ------------------------------------------------------------------------------------------

@triton.jit
def _wait_own_flag(p_group, n_peers, phase, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """Broken: polls only this program's own flag (always already set)."""
    seen = tl.atomic_add(p_group + tl.program_id(0), 0, sem="acquire", scope="gpu")
    while seen < phase:
        seen = tl.atomic_add(p_group + tl.program_id(0), 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def _wait_all_but_last(p_group, n_peers, phase, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """Broken: an off-by-one mask, the last peer's flag never looked at."""
    o_p = tl.arange(0, BLOCK_P)
    m_p = o_p < n_peers - 1
    seen = tl.atomic_add(p_group + o_p, 0, mask=m_p, sem="acquire", scope="gpu")
    while tl.min(tl.where(m_p, seen, phase), 0) < phase:
        seen = tl.atomic_add(p_group + o_p, 0, mask=m_p, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def _wait_skipped(p_group, phase, n_peers, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """Broken split: arrive, but never wait for the peers."""
    tl.debug_barrier()


@pytest.mark.parametrize("broken,reset_after", [(_wait_own_flag, True), (_wait_all_but_last, False)],
                         ids=["own-flag", "all-but-last"])
def test_a_broken_flags_wait_gives_a_wrong_result(monkeypatch, broken, reset_after):
    monkeypatch.setattr(kernels("gru_persistent"), "barrier_wait", broken)
    with pytest.raises(AssertionError, match="^(out|h_n): relative error"):
        _forward(monkeypatch, "flags", reset_after)


@pytest.mark.parametrize("name", ["prefetch+split", pytest.param("split+flags", marks=pytest.mark.slow)])
def test_split_without_its_wait_gives_a_wrong_result(monkeypatch, name):
    monkeypatch.setattr(kernels("gru_persistent"), "_wait", _wait_skipped)
    with pytest.raises(AssertionError, match="^(out|h_n): relative error"):
        _forward(monkeypatch, name, True)


def test_the_forward_alone_passes_unbroken(monkeypatch):
    """The teeth's own runner passes with the barriers intact (what they break is what fails)."""
    _forward(monkeypatch, "prefetch+split+flags", True)


# -- variants that cannot apply are refused ---------------------------------------------------------

def _tiny_call(reset_after):
    x, h0 = torch.randn(2, 3, 4), torch.randn(1, 3, 8)
    ws = [[torch.randn(24, 4), torch.randn(24, 8), torch.randn(24), torch.randn(24)]]
    return functional.gru(x, h0, ws, 1, False, False, strategy="persistent", reset_after=reset_after)


@pytest.mark.parametrize("name", ["tf32", "flags+tf32x3"])
def test_a_precision_without_tf32_is_refused(name):
    """Under the interpreter the TF32 rule never allows TF32 (as on a GPU with allow_tf32 off)."""
    with planner.persistent_choice(name), pytest.raises(ValueError, match=f"variant {re.escape(repr(name))}.*TF32"):
        _tiny_call(True)


def test_recompute_with_reset_after_is_refused():
    with planner.persistent_choice("recompute"), pytest.raises(ValueError, match="'recompute' applies to reset_after=False"):
        _tiny_call(True)


def test_a_precision_where_tf32_is_allowed_sets_the_kernels_precision(monkeypatch):
    """Where the rule allows TF32 (stood in for here), the variant's precision replaces the
    layer's 3xTF32 in both persistent launches; the rows strategy is left as it was."""
    monkeypatch.setattr(gru_layer, "tf32_allowed", lambda w, follows: True)
    launched = []
    monkeypatch.setattr(gru_layer, "launch", lambda kernel, grid, args, meta: launched.append((kernel.__name__, meta)))
    x, w_ih, w_hh = torch.randn(2, 3, 4), torch.randn(24, 4), torch.randn(1, 24, 8)
    lengths = torch.full((3,), 2)
    for strategy in ("persistent", "rows"):
        with planner.persistent_choice("tf32"):
            out, _, (hprev, gates) = gru_layer.gru_layer_forward(x, torch.zeros(1, 3, 8), w_ih, w_hh, None, None,
                                                                 lengths, False, True, strategy)
            gru_layer.gru_layer_backward(torch.zeros_like(out), torch.zeros(1, 3, 8), x, w_ih, w_hh, lengths, hprev,
                                         gates, False, strategy)
    assert [(name, meta["DOT_PRECISION"]) for name, meta in launched] == [
        ("gru_fwd_persistent_kernel", "tf32"), ("gru_bwd_persistent_kernel", "tf32"),
        ("gru_fwd_rows_kernel", "tf32x3"), ("gru_bwd_rows_kernel", "tf32x3")]
    assert "BARRIER_FLAGS" in launched[0][1] and "BARRIER_FLAGS" not in launched[2][1]
