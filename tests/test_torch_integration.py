"""torch.compile, torch.library.opcheck, autocast, determinism and convert()."""

import copy

import pytest
import torch
from torch import nn

import fastgru
from fastgru.ops import gru_cell as cell_ops
from fastgru.ops import gru_layer as layer_ops
from fastgru.testing import check_close


def test_opcheck_gru_layer(device):
    D, B, T, I, H = 2, 2, 3, 4, 5
    args = (
        torch.randn(T, B, I, device=device, requires_grad=True),
        torch.randn(D, B, H, device=device, requires_grad=True),
        torch.randn(D * 3 * H, I, device=device, requires_grad=True),
        torch.randn(D, 3 * H, H, device=device, requires_grad=True),
        torch.randn(D * 3 * H, device=device, requires_grad=True),
        torch.randn(D, 3 * H, device=device, requires_grad=True),
        torch.tensor([3, 2], device=device),
        False,
        True,
        None,
    )
    torch.library.opcheck(layer_ops.gru_layer_fwd, args)


def test_opcheck_gru_cell(device):
    B, I, H = 2, 4, 5
    args = (
        torch.randn(B, I, device=device, requires_grad=True),
        torch.randn(B, H, device=device, requires_grad=True),
        torch.randn(3 * H, I, device=device, requires_grad=True),
        torch.randn(3 * H, H, device=device, requires_grad=True),
        torch.randn(3 * H, device=device, requires_grad=True),
        torch.randn(3 * H, device=device, requires_grad=True),
        True,
    )
    torch.library.opcheck(cell_ops.gru_cell_fwd, args)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.cell = nn.GRUCell(12, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        out, h_n = self.gru(x)
        return self.head(self.cell(out[:, -1], h_n[-1]))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_fullgraph_with_gradients(backend, device):
    torch._dynamo.reset()
    model = fastgru.convert(Encoder()).to(device)
    x = torch.randn(3, 5, 4, device=device, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    y_c = compiled(x)
    g_c = torch.autograd.grad(y_c.sum(), [x, *model.parameters()])
    y_e = model(x)
    g_e = torch.autograd.grad(y_e.sum(), [x, *model.parameters()])
    torch.testing.assert_close(y_c, y_e)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b)


def test_convert_round_trip_nested_model(device):
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(4, 4), Encoder())

        def forward(self, x):
            return self.inner[1](self.inner[0](x))

    model = Outer().to(device)
    x = torch.randn(2, 5, 4, device=device)
    fast = fastgru.convert(model)
    assert isinstance(fast.inner[1].gru, fastgru.GRU) and isinstance(fast.inner[1].cell, fastgru.GRUCell)
    assert isinstance(model.inner[1].gru, nn.GRU), "inplace=False must leave the input untouched"
    ref64 = copy.deepcopy(model).double()
    check_close(fast(x), ref64(x.double()), torch.float32, baseline=model(x))
    back = fastgru.convert(fast, to="torch")
    assert type(back.inner[1].gru) is nn.GRU and type(back.inner[1].cell) is nn.GRUCell
    torch.testing.assert_close(back(x), model(x))
    # Parameters preserved (same values, device and dtype); inplace converts the model itself.
    assert all(torch.equal(a, b) for a, b in zip(fast.parameters(), model.parameters()))
    same = fastgru.convert(model, inplace=True)
    assert same is model and isinstance(model.inner[1].gru, fastgru.GRU)


def test_convert_top_level_and_bad_target():
    g = nn.GRU(3, 4)
    f = fastgru.convert(g)
    assert isinstance(f, fastgru.GRU) and torch.equal(f.weight_hh_l0, g.weight_hh_l0)
    with pytest.raises(ValueError, match="to must be"):
        fastgru.convert(g, to="jax")


def test_autocast_runs_in_low_precision(device):
    m = fastgru.GRU(4, 8, batch_first=True).to(device)
    ref64 = nn.GRU(4, 8, batch_first=True).to(device).double()
    ref64.load_state_dict(m.state_dict())
    x = torch.randn(2, 5, 4, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out, h = m(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert m.weight_ih_l0.grad.dtype == torch.float32
    check_close(out, ref64(x.double())[0], torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
def test_deterministic_bitwise(strategy):
    m = fastgru.GRU(64, 256, num_layers=2, bidirectional=True, strategy=strategy).cuda()
    x = torch.randn(50, 8, 64, device="cuda", requires_grad=True)
    runs = []
    for _ in range(2):
        out, h = m(x)
        grads = torch.autograd.grad(out.sum() + h.sum(), [x, *m.parameters()])
        runs.append([out, h, *grads])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_compile_with_lengths_on_pytorch_operators(family):
    """The CPU path of ``lengths=`` runs PyTorch's operator on a PackedSequence it builds, and
    Dynamo breaks the graph around packing: the PackedSequence it returns must be one Dynamo
    can rebuild across the break (a NamedTuple ``_replace`` is not)."""
    torch._dynamo.reset()
    module = (fastgru.GRU if family == "gru" else fastgru.LSTM)(3, 4, batch_first=True)
    x = torch.randn(4, 5, 3, requires_grad=True)
    lengths = torch.tensor([5, 3, 4, 2])
    with fastgru.backend.using("torch"):
        out_c, _ = torch.compile(module, backend="eager")(x, lengths=lengths)
        (g_c,) = torch.autograd.grad(out_c.square().sum(), x)
        out_e, _ = module(x, lengths=lengths)
        (g_e,) = torch.autograd.grad(out_e.square().sum(), x)
    assert torch.equal(out_c, out_e) and torch.equal(g_c, g_e)
