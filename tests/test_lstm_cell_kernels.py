"""The fused LSTM cell's kernels (ops.lstm_cell.lstm_cell_op) against fastgru.reference.lstm_cell
in float64: outputs and every gradient, with and without bias, gradients through h' alone and
c' alone (autograd's None for the other), several hidden blocks and K steps (GPU-sized tiles
forced, as tests/test_gru_gpu_tiles.py does for the GRU cell), bf16 / fp16, and opcheck on
both custom ops. Interpreter shapes are tiny."""

import pytest
import torch

from fastgru import reference
from fastgru.launchers import gru_cell as cell_launcher
from fastgru.launchers import lstm_cell as launcher
from fastgru.launchers import plan as planner
from fastgru.ops import lstm_cell as ops
from fastgru.testing import check_close


def _leaves(dtype, B, I, H, bias):
    shapes = [(B, I), (B, H), (B, H), (4 * H, I), (4 * H, H)] + [(4 * H,), (4 * H,)] * bias
    ours = [(torch.randn(s, dtype=torch.float64) * 0.5).to(dtype).requires_grad_() for s in shapes]
    return ours, [t.detach().double().requires_grad_() for t in ours]


def _call(fn, leaves):
    x, h, c, w_ih, w_hh, *b = leaves
    b_ih, b_hh = b or (None, None)
    return fn(x, h, c, w_ih, w_hh, b_ih, b_hh)


def _record_backward(monkeypatch):
    """Which of dh', dc' reached the backward launcher as None, per call."""
    seen = []

    def spy(dh_new, dc_new, *rest):
        seen.append((dh_new is None, dc_new is None))
        return launcher.lstm_cell_backward(dh_new, dc_new, *rest)

    monkeypatch.setattr(ops, "lstm_cell_backward", spy)
    return seen


def against_reference(dtype, B, I, H, bias=True, through=(0, 1)):
    """Forward and backward of lstm_cell_op against the float64 reference; the loss takes the
    outputs whose index is in ``through`` (0: h', 1: c') with random cotangents."""
    ours, ref = _leaves(dtype, B, I, H, bias)
    outs, refs = _call(ops.lstm_cell_op, ours), _call(reference.lstm_cell, ref)
    what = f"B={B} I={I} H={H} bias={bias} {dtype}"
    for name, a, b in zip(("h'", "c'"), outs, refs):
        assert a.dtype == dtype and a.shape == (B, H)
        check_close(a, b, dtype, name=f"{what} {name}")
    gen = torch.Generator().manual_seed(0)
    gs = [torch.randn(B, H, generator=gen, dtype=torch.float64) for _ in range(2)]
    grads = torch.autograd.grad(sum((outs[k] * gs[k].to(dtype)).sum() for k in through), ours)
    grads64 = torch.autograd.grad(sum((refs[k] * gs[k]).sum() for k in through), ref)
    names = ["dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    for name, a, b in zip(names, grads, grads64):
        assert a.dtype == dtype
        check_close(a, b, dtype, name=f"{what} {name}")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_cell_matches_reference(dtype, bias):
    against_reference(dtype, 3, 5, 6, bias)


@pytest.mark.parametrize("through", [(0,), (1,)], ids=["only_dh", "only_dc"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_gradient_through_one_output(dtype, through, monkeypatch):
    """A loss on h' alone (or c' alone) gives the other output no gradient: autograd hands the
    backward None, which the kernel reads as zero."""
    seen = _record_backward(monkeypatch)
    against_reference(dtype, 2, 4, 5, True, through)
    assert seen == [(through == (1,), through == (0,))]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cell_low_precision(dtype):
    against_reference(dtype, 3, 8, 16)


def _force(monkeypatch, block_b, block_h, block_k, B, H):
    plan = planner.GRUPlan("stepwise", block_b, block_h, block_k, -(-B // block_b), -(-H // block_h), 4)
    calls = []
    # Both cells plan through the GRU cell launcher's cell_plan.
    monkeypatch.setattr(cell_launcher, "plan_gru", lambda *a, **k: calls.append(k.get("family")) or plan)
    return calls


@pytest.mark.parametrize("dtype,tile", [(torch.float64, (2, 4, 4)), (torch.float32, (16, 16, 16)),
                                        (torch.bfloat16, (16, 32, 16))], ids=["fp64", "fp32", "bf16"])
def test_several_hidden_blocks(dtype, tile, monkeypatch):
    """Two hidden blocks (the second masked), a K loop of several steps with a masked last one,
    masked batch rows: the tiles a GPU plan returns, run here explicitly."""
    block_b, block_h, block_k = tile
    B, H, I = block_b + 1 if block_b < 16 else block_b // 2 + 1, block_h + 3, 2 * block_k + 1
    calls = _force(monkeypatch, *tile, B, H)
    against_reference(dtype, B, I, H, bias=dtype != torch.float32)
    assert calls == ["lstm", "lstm"], "forward and backward each plan once, as the LSTM family"


def test_saves_only_when_a_gradient_can_flow(monkeypatch):
    saves = []

    def spy(*args):
        saves.append(args[-1])
        return launcher.lstm_cell_forward(*args)

    monkeypatch.setattr(ops, "lstm_cell_forward", spy)
    (x, h, c, w_ih, w_hh, b_ih, b_hh), _ = _leaves(torch.float32, 2, 3, 4, True)
    args = [t.detach() for t in (x, h, c, w_ih, w_hh, b_ih, b_hh)]
    ops.lstm_cell_op(*args)
    with torch.no_grad():
        ops.lstm_cell_op(x, h, c, w_ih, w_hh, b_ih, b_hh)
    ops.lstm_cell_op(*args[:2], c, *args[3:])  # only c requires a gradient
    assert saves == [False, False, True]


def test_backward_without_save_raises():
    (x, h, c, w_ih, w_hh), _ = _leaves(torch.float32, 2, 3, 4, False)
    h_new, _, _ = ops.lstm_cell_fwd(x, h, c, w_ih, w_hh, None, None, False)
    with pytest.raises(RuntimeError, match="without saving"):
        h_new.sum().backward()


def _opcheck_args(dtype=torch.float32):
    (x, h, c, w_ih, w_hh, b_ih, b_hh), _ = _leaves(dtype, 2, 3, 4, True)
    return x, h, c, w_ih, w_hh, b_ih, b_hh


@pytest.mark.parametrize("save", [True, False], ids=["save", "nosave"])
def test_opcheck_forward(save):
    """With save, opcheck runs the registered backward too; without, nothing requires a gradient
    (a backward through an unsaved forward raises by design: test_backward_without_save_raises)."""
    args = _opcheck_args() if save else tuple(t.detach() for t in _opcheck_args())
    torch.library.opcheck(ops.lstm_cell_fwd, (*args, save))


@pytest.mark.parametrize("given", [(True, True), (True, False), (False, True)], ids=["both", "dh", "dc"])
def test_opcheck_backward(given):
    x, h, c, w_ih, w_hh, b_ih, b_hh = (t.detach() for t in _opcheck_args())
    gates = ops.lstm_cell_fwd(x, h, c, w_ih, w_hh, b_ih, b_hh, True)[2]
    dh, dc = (torch.randn_like(h) if g else None for g in given)
    torch.library.opcheck(ops.lstm_cell_bwd, (dh, dc, x, h, w_ih, w_hh, gates))
