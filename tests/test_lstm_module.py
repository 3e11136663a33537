"""fastgru.LSTM / LSTMCell as drop-ins for torch.nn.LSTM / nn.LSTMCell (state_dict copied).

Two ways: on the CPU backend (PyTorch's own operator on the module's parameters) every output
and gradient must equal nn.LSTM's exactly; through the kernels (Triton's interpreter without a
GPU) they are judged by the numerics contract against nn.LSTM run in float64, with nn.LSTM's own
error in the dtype as a bound. Interpreter shapes are tiny (each case a few seconds).
"""

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import fastgru
from fastgru import backend
from fastgru.ops import lstm_layer as layer_ops
from fastgru.testing import check_close

from conftest import DEVICE
from test_gru_dispatch_table import assert_explains_the_cpu_backend


def make_pair(dtype=torch.float32, cls=nn.LSTM, **cfg):
    ref = cls(**cfg).to(dtype)
    ours = getattr(fastgru, cls.__name__)(**cfg).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _flat(out):
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _data(x):
    return x.data if isinstance(x, PackedSequence) else x


def run(module, x, hx=None, seed=0):
    """module(x, hx) forward and backward with fixed random cotangents on every output (output,
    h_n, c_n). Returns (outputs, gradients of x (if it requires grad), h_0 and c_0 (if given) and
    every parameter)."""
    outs = _flat(module(x, hx) if hx is not None else module(x))
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in outs)
    leaves = [t for t in (_data(x), *(hx or ())) if t.requires_grad] + list(module.parameters())
    return [o.detach() for o in outs], list(torch.autograd.grad(loss, leaves))


def _leaf(t, dtype=None):
    if isinstance(t, PackedSequence):
        return t._replace(data=_leaf(t.data, dtype))
    return t.detach().to(dtype or t.dtype).requires_grad_()


def _clone_inputs(x, hx, dtype=None):
    return _leaf(x, dtype), None if hx is None else tuple(_leaf(s, dtype) for s in hx)


def assert_exact(ref, ours, x, hx=None):
    """ours and nn's module on copies of the same inputs: every output and gradient bitwise equal."""
    want = run(ref, *_clone_inputs(x, hx))
    got = run(ours, *_clone_inputs(x, hx))
    for a, b in zip(want[0] + want[1], got[0] + got[1], strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def assert_parity(ref, ours, x, hx, dtype, baseline=True):
    """ours vs nn's module in float64, outputs and gradients; nn's own error in ``dtype`` as a bound."""
    outs64, grads64 = run(copy.deepcopy(ref).double(), *_clone_inputs(x, hx, torch.float64))
    outs, grads = run(ours, *_clone_inputs(x, hx))
    base_outs, base_grads = run(ref, *_clone_inputs(x, hx)) if baseline else (None, None)
    names = ["x", *(["h0", "c0"] if hx is not None else []), *(n for n, _ in ours.named_parameters())]
    for i, (o, o64) in enumerate(zip(outs, outs64, strict=True)):
        check_close(o, o64, dtype, baseline=base_outs[i] if baseline else None, name=f"output {i}")
    for i, (g, g64) in enumerate(zip(grads, grads64, strict=True)):
        check_close(g, g64, dtype, baseline=base_grads[i] if baseline else None, name=f"grad {names[i]}")


def _inputs(L, D, T, B, I, H, P, batch_first, h0, device=DEVICE, dtype=torch.float32):
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device=device, dtype=dtype, requires_grad=True)
    if not h0:
        return x, None
    hx = (torch.randn(L * D, B, P or H, device=device, dtype=dtype), torch.randn(L * D, B, H, device=device,
                                                                                     dtype=dtype))
    return x, tuple(s.requires_grad_() for s in hx)


# (num_layers, bidirectional, batch_first, bias, h0, proj_size, T, B, I, H)
TORCH_CASES = [
    (1, False, False, True, False, 0, 1, 1, 4, 8),
    (1, False, True, True, True, 3, 5, 3, 5, 6),
    (1, True, False, False, True, 0, 7, 4, 3, 5),
    (2, False, False, True, True, 2, 6, 3, 4, 5),
    (2, True, True, True, True, 4, 4, 2, 3, 7),
    (3, True, False, False, False, 1, 3, 3, 2, 4),
]


def _id(c):
    L, bi, bf, bias, h0, P, T, B, I, H = c
    return (f"L{L}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}-{'bias' if bias else 'nobias'}-"
            f"{'h0' if h0 else 'noh0'}-P{P}-T{T}-B{B}-I{I}-H{H}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=_id)
def test_cpu_backend_equals_nn_lstm(case, dtype):
    """The CPU backend runs PyTorch's own operator on the module's parameters: exactly nn.LSTM."""
    L, bi, bf, bias, h0, P, T, B, I, H = case
    ref, ours = make_pair(dtype, input_size=I, hidden_size=H, num_layers=L, bias=bias, batch_first=bf,
                          bidirectional=bi, proj_size=P)
    with backend.using("torch"):
        assert_exact(ref, ours, *_inputs(L, 2 if bi else 1, T, B, I, H, P, bf, h0, "cpu", dtype))


# Through the kernels: tiny shapes (the interpreter runs every program of every step).
KERNEL_CASES = [
    (1, False, False, True, True, 0, 3, 2, 3, 5),
    (1, True, True, False, False, 2, 3, 3, 4, 5),
    (2, True, False, True, True, 3, 2, 2, 3, 4),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=_id)
def test_kernels_match_nn_lstm(case, dtype, device):
    L, bi, bf, bias, h0, P, T, B, I, H = case
    ref, ours = make_pair(dtype, input_size=I, hidden_size=H, num_layers=L, bias=bias, batch_first=bf,
                          bidirectional=bi, proj_size=P)
    ref, ours = ref.to(device), ours.to(device)
    assert_parity(ref, ours, *_inputs(L, 2 if bi else 1, T, B, I, H, P, bf, h0, device, dtype), dtype)


def _packed(T, B, I, sorted_, device, dtype=torch.float32):
    lengths = torch.tensor([T, T - 1, 2, 1][:B]) if sorted_ else torch.tensor([2, T, 1, T - 1][:B])
    x = torch.randn(T, B, I, device=device, dtype=dtype)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=sorted_)
    return packed._replace(data=packed.data.requires_grad_())


def _assert_same_packing(a, b):
    assert torch.equal(a.batch_sizes, b.batch_sizes)
    for i, j in ((a.sorted_indices, b.sorted_indices), (a.unsorted_indices, b.unsorted_indices)):
        assert (i is None and j is None) or torch.equal(i, j)


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("sorted_", [True, False], ids=["sorted", "unsorted"])
def test_packed_sequence_cpu_backend(sorted_, proj):
    ref, ours = make_pair(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=proj)
    packed = _packed(5, 4, 3, sorted_, "cpu")
    hx = (torch.randn(4, 4, proj or 5, requires_grad=True), torch.randn(4, 4, 5, requires_grad=True))
    with backend.using("torch"):
        _assert_same_packing(ours(packed, hx)[0], ref(packed, hx)[0])
        assert_exact(ref, ours, packed, hx)


@pytest.mark.parametrize("sorted_", [True, False], ids=["sorted", "unsorted"])
def test_packed_sequence_kernels(sorted_, device):
    """Padded in the caller's order with per-row lengths, run, packed again: nn.LSTM's result."""
    ref, ours = make_pair(input_size=3, hidden_size=5, bidirectional=True, proj_size=3)
    ref, ours = ref.to(device), ours.to(device)
    packed = _packed(4, 3, 3, sorted_, device)
    hx = (torch.randn(2, 3, 3, device=device, requires_grad=True), torch.randn(2, 3, 5, device=device,
                                                                                requires_grad=True))
    _assert_same_packing(ours(packed, hx)[0], ref(packed, hx)[0])
    assert_parity(ref, ours, packed, hx, torch.float32)


@pytest.mark.parametrize("which", ["torch", "kernels"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_lengths_keyword_equals_packing(batch_first, which, device):
    """forward(padded, lengths=...) gives what the packed call gives, without packing."""
    if which == "torch" and device != "cpu":
        pytest.skip("the CPU backend")
    device = "cpu" if which == "torch" else device
    T, B, I, H = 4, 3, 3, 5
    ours = fastgru.LSTM(I, H, bidirectional=True, proj_size=2, batch_first=batch_first).to(device)
    lengths = torch.tensor([3, 4, 1])
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device=device)
    with backend.using("torch") if which == "torch" else torch.enable_grad():
        out, (h_n, c_n) = ours(x, lengths=lengths)
        packed_out, (packed_h, packed_c) = ours(pack_padded_sequence(x, lengths, batch_first=batch_first,
                                                                     enforce_sorted=False))
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
            ours(x, lengths=torch.tensor([0, 4, 2]))
        with pytest.raises(ValueError, match="LSTM: lengths goes with a padded 3-D batched input"):
            ours(x[0] if batch_first else x[:, 0], lengths=lengths)
    padded, _ = pad_packed_sequence(packed_out, batch_first=batch_first, total_length=T)
    for a, b in ((out, padded), (h_n, packed_h), (c_n, packed_c)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("which", ["torch", "kernels"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_unbatched_input(batch_first, which, device):
    device = "cpu" if which == "torch" else device
    ref, ours = make_pair(input_size=3, hidden_size=5, batch_first=batch_first, proj_size=2)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(4, 3, device=device, requires_grad=True)
    hx = (torch.randn(1, 2, device=device, requires_grad=True), torch.randn(1, 5, device=device, requires_grad=True))
    with backend.using("torch") if which == "torch" else torch.enable_grad():
        out, (h_n, c_n) = ours(x, hx)
        assert out.shape == (4, 2) and h_n.shape == (1, 2) and c_n.shape == (1, 5)
        out, (h_n, c_n) = ours(x)
        assert out.shape == (4, 2) and h_n.shape == (1, 2) and c_n.shape == (1, 5)
        if which == "torch":
            assert_exact(ref, ours, x, hx)
        else:
            assert_parity(ref, ours, x, hx, torch.float32)


def test_zero_batch_forward_and_backward(device):
    ours = fastgru.LSTM(3, 5, num_layers=2, proj_size=2).to(device)
    x = torch.randn(4, 0, 3, device=device, requires_grad=True)
    out, (h_n, c_n) = ours(x)
    assert out.shape == (4, 0, 2) and h_n.shape == (2, 0, 2) and c_n.shape == (2, 0, 5)
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert all(p.grad is not None and torch.all(p.grad == 0) for p in ours.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_within_contract(dtype, device):
    """bf16/fp16 through the kernels: the cell state carried in fp32, within the contract."""
    baseline = not (device == "cpu" and dtype == torch.float16)  # nn.LSTM has no fp16 CPU kernel
    ref, ours = make_pair(dtype, input_size=4, hidden_size=8, bidirectional=True, proj_size=4)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(3, 2, 4, device=device, dtype=dtype, requires_grad=True)
    assert_parity(ref, ours, x, None, dtype, baseline=baseline)
    _, (h_n, c_n) = ours(x)
    assert h_n.dtype == c_n.dtype == dtype


def test_backward_in_eval_mode(device):
    ours = fastgru.LSTM(3, 4, proj_size=2).to(device).eval()
    x = torch.randn(2, 2, 3, device=device, requires_grad=True)
    out, (h_n, c_n) = ours(x)
    (out.sum() + c_n.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_backward_without_saving_raises(device):
    """A forward run with no gradient needed saves nothing; its backward says so, not garbage."""
    m = fastgru.LSTM(3, 4).to(device)
    x = torch.randn(2, 2, 3, device=device)
    lengths = torch.tensor([2, 1], device=device)
    args = [x, torch.zeros(1, 2, 4, device=device), torch.zeros(1, 2, 4, device=device), m.weight_ih_l0,
            m.weight_hh_l0.unsqueeze(0), m.bias_ih_l0, m.bias_hh_l0.unsqueeze(0), None, lengths, False, False, None]
    out = layer_ops.lstm_layer_fwd(*args)
    assert out[3].numel() == 0 and out[4].numel() == 0
    with pytest.raises(RuntimeError, match="ran without saving"):
        out[0].sum().backward()


@torch.no_grad()
def test_dropout_between_layers_like_nn(device):
    ours = fastgru.LSTM(3, 4, num_layers=2, dropout=0.5).to(device)
    x = torch.randn(2, 2, 3, device=device)
    ours.eval()
    assert torch.equal(ours(x)[0], ours(x)[0])  # no dropout in eval
    ours.train()
    torch.manual_seed(1)
    a = ours(x)[0]
    torch.manual_seed(1)
    assert torch.equal(a, ours(x)[0]) and not torch.equal(a, ours.eval()(x)[0])  # torch's RNG drives it
    ref = nn.LSTM(3, 4, num_layers=2, dropout=1.0).to(device)
    ref.load_state_dict(ours.state_dict())
    ours.dropout = 1.0
    ours.train()
    # With every element dropped, the second layer sees zeros: nn's semantics, exactly.
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-6, atol=1e-6)


def test_state_dict_names_shapes_and_repr():
    for kwargs in (dict(), dict(num_layers=2, bias=False, batch_first=True, dropout=0.1, bidirectional=True,
                                proj_size=3)):
        ref, ours = nn.LSTM(5, 7, **kwargs), fastgru.LSTM(5, 7, **kwargs)
        assert list(ours.state_dict()) == list(ref.state_dict())
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
        assert [[p.shape for p in ws] for ws in ours.all_weights] == [[p.shape for p in ws] for ws in ref.all_weights]
        assert repr(ours) == repr(ref)
        ours.load_state_dict(ref.state_dict())
        back = nn.LSTM(5, 7, **kwargs)
        back.load_state_dict(ours.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), back.parameters()))
        ours.flatten_parameters()  # a no-op, as code written for nn.LSTM calls it
    cell_ref, cell = nn.LSTMCell(4, 3, bias=False), fastgru.LSTMCell(4, 3, bias=False)
    assert list(cell.state_dict()) == list(cell_ref.state_dict()) and repr(cell) == repr(cell_ref)
    cell.load_state_dict(cell_ref.state_dict())


def test_init_and_factory_arguments():
    m = fastgru.LSTM(4, 9, proj_size=2, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    bound = 1 / 9 ** 0.5  # nn's init: U(-1/sqrt(H), 1/sqrt(H)) for every parameter, w_hr included
    assert all(p.abs().max() <= bound for p in m.parameters())
    assert m.weight_hr_l0.std() > bound / 4


def test_pickle_and_deepcopy(device):
    ours = fastgru.LSTM(3, 4, proj_size=2).to(device)
    x = torch.randn(2, 2, 3, device=device)
    expect = ours(x)[0]
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert torch.equal(clone(x)[0], expect)


def test_cell_cpu_backend_equals_nn_lstm_cell():
    ref, ours = make_pair(torch.float64, nn.LSTMCell, input_size=4, hidden_size=5)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    hx = (torch.randn(3, 5, dtype=torch.float64, requires_grad=True),
          torch.randn(3, 5, dtype=torch.float64, requires_grad=True))
    with backend.using("torch"):
        assert_exact(ref, ours, x, hx)
        assert_exact(ref, ours, x)
        h, c = ours(x[0])  # unbatched, zero state
        assert h.shape == c.shape == (5,)


@pytest.mark.parametrize("bias", [True, False])
def test_cell_kernel_matches_nn_lstm_cell(bias, device):
    ref, ours = make_pair(input_size=4, hidden_size=5, bias=bias, cls=nn.LSTMCell)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(3, 4, device=device, requires_grad=True)
    hx = (torch.randn(3, 5, device=device, requires_grad=True), torch.randn(3, 5, device=device, requires_grad=True))
    assert_parity(ref, ours, x, hx, torch.float32)
    h, c = ours(x[0], (hx[0][0], hx[1][0]))
    assert h.shape == c.shape == (5,)


def test_gradcheck_float64_through_kernels(device):
    """Lengths and a projection: every gradient against finite differences (one direction; both
    directions are checked against nn.LSTM above)."""
    m = fastgru.LSTM(2, 3, proj_size=2, batch_first=True).double().to(device)
    x = torch.randn(2, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.randn(1, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    c0 = torch.randn(1, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    lengths = torch.tensor([1, 2], device=device)

    def fn(x, h0, c0, *ps):
        out, (h, c) = fastgru.functional.lstm(x, (h0, c0), [ps], 1, False, True, lengths=lengths)
        return out, h, c

    assert torch.autograd.gradcheck(fn, (x, h0, c0, *m.parameters()), fast_mode=True)


def test_convert_both_ways(device):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 6, batch_first=True, proj_size=2)
            self.cell = nn.LSTMCell(2, 4)
            self.gru = nn.GRU(3, 4)

        def forward(self, x):
            out, (h, c) = self.lstm(x)
            return self.cell(out[:, -1])[0] + self.gru(x.transpose(0, 1))[1][0]

    model = Model().to(device)
    x = torch.randn(2, 3, 3, device=device)
    fast = fastgru.convert(model)
    assert type(fast.lstm) is fastgru.LSTM and type(fast.cell) is fastgru.LSTMCell and type(fast.gru) is fastgru.GRU
    assert type(model.lstm) is nn.LSTM, "inplace=False must leave the input untouched"
    assert fast.lstm.proj_size == 2 and fast.lstm.batch_first
    assert all(torch.equal(a, b) for a, b in zip(fast.parameters(), model.parameters()))
    check_close(fast(x), copy.deepcopy(model).double()(x.double()), torch.float32, baseline=model(x))
    back = fastgru.convert(fast, to="torch")
    assert type(back.lstm) is nn.LSTM and type(back.cell) is nn.LSTMCell and back.lstm.proj_size == 2
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    top = fastgru.convert(nn.LSTM(3, 4, num_layers=2, bidirectional=True))
    assert isinstance(top, fastgru.LSTM) and top.num_layers == 2 and top.bidirectional
    # The parameters themselves are kept: inplace, the converted module holds the same tensors.
    holder = nn.Sequential(nn.LSTMCell(2, 3))
    weight = holder[0].weight_hh
    assert fastgru.convert(holder, inplace=True)[0].weight_hh is weight and type(holder[0]) is fastgru.LSTMCell


@pytest.mark.parametrize("proj", [0, 2])
def test_opcheck_lstm_layer(proj, device):
    D, B, T, I, H = 2, 2, 2, 3, 4
    R = proj or H
    g = dict(device=device, requires_grad=True)
    args = (
        torch.randn(T, B, I, **g), torch.randn(D, B, R, **g), torch.randn(D, B, H, **g),
        torch.randn(D * 4 * H, I, **g), torch.randn(D, 4 * H, R, **g), torch.randn(D * 4 * H, **g),
        torch.randn(D, 4 * H, **g), torch.randn(D, proj, H, **g) if proj else None,
        torch.tensor([2, 1], device=device), False, True, None,
    )
    torch.library.opcheck(layer_ops.lstm_layer_fwd, args)


@pytest.mark.parametrize("compile_backend", ["eager", "aot_eager"])
def test_compile_fullgraph_with_gradients(compile_backend, device):
    torch._dynamo.reset()
    model = fastgru.LSTM(3, 4, bidirectional=True, proj_size=2, batch_first=True).to(device)
    x = torch.randn(2, 3, 3, device=device, requires_grad=True)

    def fn(x):
        out, (h, c) = model(x)
        return out.sum() + 2 * h.sum() + 3 * c.sum()

    compiled = torch.compile(fn, fullgraph=True, backend=compile_backend)
    y_c = compiled(x)
    g_c = torch.autograd.grad(y_c, [x, *model.parameters()])
    y_e = fn(x)
    g_e = torch.autograd.grad(y_e, [x, *model.parameters()])
    torch.testing.assert_close(y_c, y_e)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b)


def test_autocast_runs_in_low_precision(device):
    m = fastgru.LSTM(3, 6, batch_first=True, proj_size=2).to(device)
    ref64 = nn.LSTM(3, 6, batch_first=True, proj_size=2).to(device).double()
    ref64.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 3, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out, (h, c) = m(x)
    assert out.dtype == h.dtype == c.dtype == torch.bfloat16
    (out.float().sum() + c.float().sum()).backward()
    assert m.weight_ih_l0.grad.dtype == torch.float32 and m.weight_hr_l0.grad.dtype == torch.float32
    out64, (_, c64) = ref64(x.double())
    check_close(out, out64, torch.bfloat16)
    check_close(c, c64, torch.bfloat16)


def test_explain_says_what_an_lstm_call_runs():
    """fastgru.explain takes an LSTM: the backend, PyTorch's operator on the CPU, the first layer's
    plan on the kernels (the launcher's own, with proj_size and both directions), forced strategies."""
    mod = fastgru.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)
    x = torch.randn(5, 2, 4)
    assert_explains_the_cpu_backend(mod, x, "PyTorch's own LSTM operator")
    with backend.using("interpret"):
        e = fastgru.explain(mod, x[:, 0])  # unbatched
        assert (e.strategy, e.plan.block_b, e.plan.block_h) == ("rows", 1, 8)
        mod.strategy = "stepwise"
        hx = (torch.zeros(4, 2, 3), torch.zeros(4, 2, 6))
        e = fastgru.explain(mod, x, hx)
        assert (e.strategy, e.reason, e.plan.strategy) == ("stepwise", "forced", "stepwise")
        mod.strategy = "cudnn"
        assert fastgru.explain(mod, x).strategy == "cudnn"
        with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size"):
            fastgru.explain(mod, x, (hx[0], hx[1][:, :1]))
    with pytest.raises(TypeError, match="module must be a fastgru.GRU or fastgru.LSTM"):
        fastgru.explain(nn.LSTM(4, 6), x)
