"""The recurrence kernels (through fastgru.functional) against fastgru.reference in float64:
both strategies, per-row lengths, both directions, every dtype, and gradcheck."""

import pytest
import torch

from fastgru import functional, reference
from fastgru.testing import check_close

STRATEGIES = ["rows", "stepwise", "persistent"]


def make_weights(L, D, I, H, dtype, device, bias=True):
    ws = []
    for layer in range(L):
        i_l = I if layer == 0 else D * H
        for _ in range(D):
            w = [torch.randn(3 * H, i_l) * 0.4, torch.randn(3 * H, H) * 0.4]
            w += [torch.randn(3 * H) * 0.4, torch.randn(3 * H) * 0.4] if bias else [None, None]
            ws.append([t.to(device=device, dtype=dtype).requires_grad_() if t is not None else None for t in w])
    return ws


def run(fn, x, h0, ws, lengths):
    out, h_n = fn(x, h0, ws, lengths)
    leaves = [x, h0] + [t for w in ws for t in w if t is not None]
    gen = torch.Generator().manual_seed(0)
    g_out = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
    g_h = torch.randn(h_n.shape, generator=gen, dtype=torch.float64).to(h_n)
    return [out, h_n], torch.autograd.grad((out * g_out).sum() + (h_n * g_h).sum(), leaves)


def _copy(ws, dtype):
    return [[t.detach().to(dtype).requires_grad_() if t is not None else None for t in w] for w in ws]


def check_against_reference(L, D, T, B, I, H, dtype, device, strategy, lengths=None, bias=True, batch_first=False,
                            reset_after=True):
    ws64 = make_weights(L, D, I, H, torch.float64, device, bias)
    x64 = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64, device=device, requires_grad=True)
    h64 = torch.randn(L * D, B, H, dtype=torch.float64, device=device, requires_grad=True)
    x, h0, ws = x64.detach().to(dtype).requires_grad_(), h64.detach().to(dtype).requires_grad_(), _copy(ws64, dtype)

    def ours(x, h0, ws, lengths):
        return functional.gru(x, h0, ws, L, D == 2, batch_first, lengths=lengths, strategy=strategy,
                              reset_after=reset_after)

    def ref(x, h0, ws, lengths):
        xt = x.transpose(0, 1) if batch_first else x
        out, h_n = reference.gru(xt, h0, ws, L, D == 2, lengths, reset_after=reset_after)
        return (out.transpose(0, 1) if batch_first else out), h_n

    outs, grads = run(ours, x, h0, ws, lengths)
    outs64, grads64 = run(ref, x64, h64, ws64, lengths)
    for name, a, b in zip(["out", "h_n"], outs, outs64):
        check_close(a, b, dtype, name=name)
    for i, (a, b) in enumerate(zip(grads, grads64)):
        check_close(a, b, dtype, name=f"grad {i}")
    return outs


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "T,B,H,D", [(1, 1, 16, 1), (3, 3, 20, 2), (17, 5, 12, 1), (17, 3, 33, 2)], ids=lambda v: str(v)
)
def test_layer_matches_reference(T, B, H, D, strategy, device):
    check_against_reference(1, D, T, B, 5, H, torch.float64, device, strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
def test_variable_lengths(D, strategy, device):
    lengths = torch.tensor([7, 1, 4, 6, 3])
    out, _ = check_against_reference(2, D, 7, 5, 4, 12, torch.float64, device, strategy, lengths=lengths)
    # Past its length a row's output is exactly zero (nn.GRU's packed semantics).
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_batch_first_layout_and_no_bias(batch_first, device):
    check_against_reference(1, 2, 5, 3, 4, 12, torch.float64, device, "rows", bias=False, batch_first=batch_first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_dtypes_within_contract(dtype, device):
    check_against_reference(1, 2, 6, 3, 8, 16, dtype, device, "rows", lengths=torch.tensor([6, 2, 5]))


def test_gradcheck_with_lengths(device):
    ws = make_weights(1, 2, 3, 4, torch.float64, device)
    x = torch.randn(4, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    leaves = [t for w in ws for t in w]

    def fn(x, h0, *flat):
        return functional.gru(x, h0, [flat[:4], flat[4:]], 1, True, lengths=lengths)

    assert torch.autograd.gradcheck(fn, (x, h0, *leaves), fast_mode=True)


def test_longer_sequence_smoke(device):
    # One larger case: T=64 exercises many ping-pong steps of carried state and carried dh.
    check_against_reference(1, 1, 64, 4, 8, 16, torch.float32, device, "rows")


def test_persistent_with_several_batch_blocks(device):
    # B=20 gives two batch blocks of 16: each block's programs run independently (own counter).
    check_against_reference(1, 2, 5, 20, 4, 12, torch.float64, device, "persistent", lengths=torch.randint(1, 6, (20,)))


def test_persistent_refuses_several_hidden_blocks_under_interpreter():
    from fastgru import backend
    from fastgru.launchers.plan import plan_gru

    if not backend.INTERPRET:
        pytest.skip("interpreter-only restriction")
    with pytest.raises(ValueError, match="one hidden block"):
        plan_gru(4, 100, 1, "cpu", "persistent")


def test_interpreter_plans():
    from fastgru.launchers.plan import plan_gru

    p = plan_gru(5, 70, 2, "cpu")
    assert (p.strategy, p.block_b, p.block_h, p.batch_blocks, p.hidden_blocks) == ("rows", 8, 64, 1, 2)
    assert plan_gru(40, 16, 1, "cpu", "stepwise").batch_blocks == 3
