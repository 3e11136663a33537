"""The LSTM's persistent kernels (kernels/lstm_persistent.py) under the interpreter, through the
layer launcher (fastgru/launchers/lstm_layer.py, strategy='persistent'), against the float64
reference (fastgru.reference.lstm_layer): the outputs, h_n, c_n and every gradient.

* One hidden block: the plan the launcher makes itself; no peers, so no grid barrier.
* Several hidden blocks (BLOCK_H 8, H = 20: three, the last partial; with proj_size 12 the
  projection / carry phase's R tiles are 8 and 4 and the third program owns none), two batch
  blocks, both directions, lengths with padding: the grid's programs run as interleaved threads
  (tests/concurrent_grid.py), so each barrier really waits.
* Teeth: gru_persistent's _meet (the counter barrier every LSTM barrier goes through) replaced by
  one that skips a barrier: with a projection the forward's barrier before the projection phase
  (m whole) or the step's closing one (h_t whole, mbuf read before it is overwritten), the
  backward's after the gates phase (dgh whole) or its closing one (dh_{t-1} whole); without one,
  the only barrier of each kernel. Each must give a wrong result.
"""

from contextlib import nullcontext

import pytest
import torch

from concurrent_grid import concurrent_grid
from fastgru import backend, reference
from fastgru.launchers import lstm_layer
from fastgru.testing import check_close
from test_gru_persistent_barrier import (
    _meet_even_phases_unwaited,
    _meet_odd_phases_unwaited,
    _meet_skipped,
    break_meet,
    expect_protocol,
    force_multi_block,
)

pytestmark = pytest.mark.skipif(not backend.INTERPRET, reason="runs the persistent kernels in the interpreter")

BLOCK_H = 8
BLOCK_B = 4
NAMES = ["out", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr"]


@pytest.fixture
def multi_block(monkeypatch):
    """Every LSTM layer launch in the test runs `persistent` with BLOCK_H hidden units and
    BLOCK_B batch rows a program (the planner asked for the LSTM's family)."""
    force_multi_block(monkeypatch, lstm_layer, BLOCK_H, BLOCK_B, family="lstm")


def _problem(T, B, I, H, P, D, lengths, batch_first, seed=0):
    """Inputs in float64 (leaves that require grad): x, h0, c0 and per direction (w_ih, w_hh,
    b_ih, b_hh, w_hr or None); and the gradients reaching out, h_n and c_n."""
    gen = torch.Generator().manual_seed(seed)
    R = P or H

    def rnd(*shape, scale=0.4):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()

    x = rnd(*((B, T, I) if batch_first else (T, B, I)), scale=1.0)
    h0, c0 = rnd(D, B, R, scale=1.0), rnd(D, B, H, scale=1.0)
    ws = [(rnd(4 * H, I), rnd(4 * H, R), rnd(4 * H), rnd(4 * H), rnd(R, H) if P else None) for _ in range(D)]
    out_shape = (B, T, D * R) if batch_first else (T, B, D * R)
    grads = [torch.randn(shape, generator=gen, dtype=torch.float64) for shape in (out_shape, (D, B, R), (D, B, H))]
    return x, h0, c0, ws, grads


def _reference(x, h0, c0, ws, grads, lengths, batch_first):
    """The reference layer's results and gradients, in NAMES' order (dw_hr stacked, or None)."""
    xt = x.transpose(0, 1) if batch_first else x
    outs, hs, cs = [], [], []
    for d, w in enumerate(ws):
        out, (h, c) = reference.lstm_layer(xt, h0[d], c0[d], *w, lengths=lengths, reverse=d == 1)
        outs.append(out)
        hs.append(h)
        cs.append(c)
    out = torch.cat(outs, -1)
    out = out.transpose(0, 1) if batch_first else out
    h_n, c_n = torch.stack(hs), torch.stack(cs)
    loss = sum((a * g).sum() for a, g in zip((out, h_n, c_n), grads))
    leaves = [x, h0, c0, *(t for w in ws for t in w if t is not None)]
    all_grads = torch.autograd.grad(loss, leaves)
    got = dict(zip(["dx", "dh0", "dc0"], all_grads[:3]))
    flat = all_grads[3:]
    per = 5 if ws[0][4] is not None else 4
    w_grads = [flat[d * per:(d + 1) * per] for d in range(len(ws))]
    got.update(dw_ih=torch.cat([g[0] for g in w_grads]), dw_hh=torch.stack([g[1] for g in w_grads]),
               db_ih=torch.stack([g[2] for g in w_grads]), db_hh=torch.stack([g[3] for g in w_grads]),
               dw_hr=torch.stack([g[4] for g in w_grads]) if per == 5 else None)
    return [out, h_n, c_n, *(got[n] for n in NAMES[3:])]


class _Ours:
    """The launcher's forward and backward with strategy='persistent', on detached copies of a
    problem's tensors (the weights laid out as the launcher takes them)."""

    def __init__(self, x, h0, c0, ws, grads, lengths, batch_first):
        self.has_proj = ws[0][4] is not None
        self.w_ih = torch.cat([w[0] for w in ws]).detach()
        self.w_hh = torch.stack([w[1] for w in ws]).detach()
        self.b_ih = torch.cat([w[2] for w in ws]).detach()
        self.b_hh = torch.stack([w[3] for w in ws]).detach()
        self.w_hr = torch.stack([w[4] for w in ws]).detach() if self.has_proj else None
        self.x, self.h0, self.c0 = x.detach(), h0.detach(), c0.detach()
        self.grads, self.lengths, self.batch_first = grads, lengths, batch_first

    def forward(self):
        """[out, h_n, c_n] (NAMES' first three); keeps what backward needs."""
        out, h_n, c_n, self.saved = lstm_layer.lstm_layer_forward(
            self.x, self.h0, self.c0, self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr, self.lengths,
            self.batch_first, True, strategy="persistent")
        return [out, h_n, c_n]

    def backward(self):
        """The gradients in NAMES' order after the first three."""
        dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr = lstm_layer.lstm_layer_backward(
            *self.grads, self.x, self.w_ih, self.w_hh, self.w_hr, self.lengths, *self.saved, self.batch_first,
            strategy="persistent")
        return [dx, dh0, dc0, dw_ih, dw_hh, db, db, dw_hr]


def _check(names, got, want):
    for name, a, b in zip(names, got, want, strict=True):
        if b is None:
            assert a is None, name
            continue
        check_close(a, b, torch.float64, name=name)


def run_layer(T, B, I, H, P, D, lengths, batch_first=False, policy=None, seed=0, between=None, timeout=120.0):
    """One layer through the persistent kernels, its programs concurrent under ``policy`` (None:
    the interpreter's own sequential launch); the forward's results checked against the float64
    reference, then (``between`` called first) the backward's, every gradient. Returns the
    GridLog (None without a policy)."""
    problem = _problem(T, B, I, H, P, D, lengths, batch_first, seed)
    want = _reference(*problem, lengths, batch_first)
    ours = _Ours(*problem, lengths, batch_first)
    with concurrent_grid(policy or "sequential", seed, timeout) if policy else nullcontext() as log:
        _check(NAMES[:3], ours.forward(), want[:3])
        if between is not None:
            between()
        _check(NAMES[3:], ours.backward(), want[3:])
    return log


LENGTHS = [4, 2, 3, 4, 1]  # B = 5: batch blocks of 4 and 1 rows, rows ending at different steps


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("P", [0, 3], ids=["no_proj", "proj"])
def test_single_block_matches_reference(P, D):
    # The launcher's own persistent plan: one hidden block over all of H (no peers: block
    # barriers only, no counter arrivals).
    log = run_layer(4, len(LENGTHS), 3, 6, P, D, torch.tensor(LENGTHS), policy="sequential")
    assert [(r.name, r.grid[0], r.grid[2]) for r in log.launches] == [
        ("lstm_fwd_persistent_kernel", 1, D), ("lstm_bwd_persistent_kernel", 1, D)]
    assert all(not r.arrivals for r in log.launches)


def test_single_block_batch_first():
    run_layer(3, 3, 2, 5, 2, 2, torch.tensor([3, 1, 2]), batch_first=True)


@pytest.mark.parametrize("P,D,policy", [(0, 2, "random"), (12, 2, "random"),
                                         pytest.param(12, 1, "sequential", marks=pytest.mark.slow),
                                         pytest.param(12, 2, "reverse", marks=pytest.mark.slow)],
                         ids=["no_proj-D2-random", "proj-D2-random", "proj-D1-sequential", "proj-D2-reverse"])
def test_multi_block_matches_reference(multi_block, P, D, policy):
    T, H = 4, 20
    log = run_layer(T, len(LENGTHS), 3, H, P, D, torch.tensor(LENGTHS), policy=policy)
    # Two phases a step with a projection (forward and backward alike), one without.
    expect_protocol(log, "lstm", T, len(LENGTHS), H, D, 2 if P else 1, BLOCK_H, BLOCK_B)


# -- teeth: a skipped barrier must fail (the broken _meet kernels are the GRU test's) ---------------

@pytest.mark.parametrize("kernel", ["forward", "backward"])
@pytest.mark.parametrize("P,broken", [(0, _meet_skipped), (12, _meet_odd_phases_unwaited),
                                      (12, _meet_even_phases_unwaited)],
                         ids=["no_proj-skipped", "proj-first-unwaited", "proj-closing-unwaited"])
def test_each_barrier_is_needed(multi_block, monkeypatch, kernel, P, broken):
    """The forward's barrier broken: an output is wrong. The backward's alone (installed after a
    correct forward): the outputs pass and a gradient is wrong."""
    between, first_wrong = break_meet(monkeypatch, broken, kernel, ("out", "h_n", "c_n"))
    with pytest.raises(AssertionError, match=first_wrong):
        run_layer(3, len(LENGTHS), 3, 20, P, 1, torch.tensor(LENGTHS).clamp(max=3), policy="sequential",
                  between=between)
