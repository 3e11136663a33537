"""fastgru.GRU against torch.nn.GRU (state_dict copied), outputs and every gradient, judged by the
numerics contract against nn.GRU run in float64 (and against nn.GRU's own error in the dtype)."""

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastgru
from fastgru.testing import check_close
from helpers import forward_backward

# (num_layers, bidirectional, batch_first, bias, h0, T, B, I, H)
CASES = [
    (1, False, False, True, False, 1, 1, 4, 8),
    (1, False, True, True, True, 3, 3, 5, 12),
    (1, True, False, False, True, 17, 5, 3, 20),
    (2, False, False, True, True, 17, 3, 6, 33),
    (2, True, True, True, False, 3, 5, 4, 12),
    (3, True, False, True, True, 3, 3, 5, 10),
    (1, False, False, True, True, 3, 3, 7, 70),  # H > one 64-wide tile: the multi-block loop
]


def _id(c):
    L, bi, bf, bias, h0, T, B, I, H = c
    return f"L{L}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}-{'bias' if bias else 'nobias'}-{'h0' if h0 else 'noh0'}-T{T}-B{B}-I{I}-H{H}"


def make_pair(dtype=torch.float32, **cfg):
    ref = nn.GRU(**cfg).to(dtype)
    ours = fastgru.GRU(**cfg).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def assert_parity(ref, ours, x, hx, dtype, baseline=True):
    """ours vs nn.GRU in float64, outputs and grads; with nn.GRU's own error in dtype as a bound."""
    ref64 = copy.deepcopy(ref).double()
    x64 = _to(x, torch.float64)
    h64 = None if hx is None else hx.detach().double().requires_grad_()
    outs64, grads64 = forward_backward(ref64, x64, h64)
    outs, grads = forward_backward(ours, x, hx)
    base_outs, base_grads = forward_backward(ref, _to(x, dtype), None if hx is None else hx.detach().clone().requires_grad_()) if baseline else (None, None)
    for i, (o, o64) in enumerate(zip(outs, outs64)):
        check_close(o, o64, dtype, baseline=base_outs[i] if baseline else None, name=f"output {i}")
    names = (["x"] if _data(x).requires_grad else []) + (["hx"] if hx is not None else []) + [n for n, _ in ours.named_parameters()]
    for i, (g, g64) in enumerate(zip(grads, grads64)):
        check_close(g, g64, dtype, baseline=base_grads[i] if baseline else None, name=f"grad {names[i]}")


def _data(x):
    return x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x


def _to(x, dtype):
    if isinstance(x, nn.utils.rnn.PackedSequence):
        return x._replace(data=x.data.detach().to(dtype).requires_grad_())
    return x.detach().to(dtype).requires_grad_()


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_gru_matches_nn_gru(case, device):
    L, bi, bf, bias, use_h0, T, B, I, H = case
    ref, ours = make_pair(input_size=I, hidden_size=H, num_layers=L, bias=bias, batch_first=bf, bidirectional=bi)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn((B, T, I) if bf else (T, B, I), device=device, requires_grad=True)
    hx = torch.randn(L * (2 if bi else 1), B, H, device=device, requires_grad=True) if use_h0 else None
    assert_parity(ref, ours, x, hx, torch.float32)


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_packed_sequence(enforce_sorted, bidirectional, device):
    T, B, I, H = 9, 4, 5, 12
    ref, ours = make_pair(input_size=I, hidden_size=H, num_layers=2, bidirectional=bidirectional)
    ref, ours = ref.to(device), ours.to(device)
    lengths = torch.tensor([9, 7, 3, 1]) if enforce_sorted else torch.tensor([3, 9, 1, 6])
    x = torch.randn(T, B, I, device=device)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    packed = packed._replace(data=packed.data.requires_grad_())
    hx = torch.randn(2 * (2 if bidirectional else 1), B, H, device=device, requires_grad=True)
    out_ours, _ = ours(packed, hx)
    out_ref, _ = ref(packed, hx)
    assert torch.equal(out_ours.batch_sizes, out_ref.batch_sizes)
    for a, b in ((out_ours.sorted_indices, out_ref.sorted_indices), (out_ours.unsorted_indices, out_ref.unsorted_indices)):
        assert (a is None and b is None) or torch.equal(a, b)
    assert_parity(ref, ours, packed, hx, torch.float32)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_lengths_keyword_equals_packing(batch_first, device):
    """forward(padded, lengths=...) gives what the packed call gives, without packing."""
    T, B, I, H = 7, 3, 5, 6
    ours = fastgru.GRU(I, H, num_layers=2, bidirectional=True, batch_first=batch_first).to(device)
    lengths = torch.tensor([4, 7, 2])
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device=device)
    out, h_n = ours(x, lengths=lengths)
    packed_out, packed_h = ours(pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False))
    padded, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=batch_first, total_length=T)
    torch.testing.assert_close(out, padded, rtol=0, atol=0)
    torch.testing.assert_close(h_n, packed_h, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lengths goes with a padded 3-D batched input"):
        ours(x[:, 0] if batch_first else x[0], lengths=lengths)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 7\]"):
        ours(x, lengths=torch.tensor([0, 7, 2]))


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_unbatched_input(batch_first, device):
    ref, ours = make_pair(input_size=5, hidden_size=12, num_layers=2, batch_first=batch_first)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(6, 5, device=device, requires_grad=True)
    hx = torch.randn(2, 12, device=device, requires_grad=True)
    out, h_n = ours(x, hx)
    assert out.shape == (6, 12) and h_n.shape == (2, 12)
    assert_parity(ref, ours, x, hx, torch.float32)


def test_zero_batch_forward_and_backward(device):
    ref, ours = make_pair(input_size=5, hidden_size=8, num_layers=2)
    x = torch.randn(4, 0, 5, device=device, requires_grad=True)
    ours = ours.to(device)
    out, h_n = ours(x)
    assert out.shape == (4, 0, 8) and h_n.shape == (2, 0, 8)
    (out.sum() + h_n.sum()).backward()
    assert all(p.grad is not None and torch.all(p.grad == 0) for p in ours.parameters())


def test_zero_length_sequence_raises_like_nn_gru(device):
    ours = fastgru.GRU(5, 8).to(device)
    with pytest.raises(RuntimeError, match="sequence length"):
        ours(torch.randn(0, 3, 5, device=device))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_within_contract(dtype, device):
    if device == "cpu" and dtype == torch.float16:
        baseline = False  # nn.GRU has no fp16 CPU kernel to compare against
    else:
        baseline = True
    ref, ours = make_pair(dtype=dtype, input_size=6, hidden_size=16, num_layers=2, bidirectional=True)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(5, 3, 6, device=device, dtype=dtype, requires_grad=True)
    assert_parity(ref, ours, x, None, dtype, baseline=baseline)


def test_dropout_train_only_and_nn_semantics(device):
    ours = fastgru.GRU(4, 8, num_layers=3, dropout=0.5).to(device)
    x = torch.randn(3, 2, 4, device=device)
    ours.eval()
    a, b = ours(x)[0], ours(x)[0]
    assert torch.equal(a, b)  # no dropout in eval
    ours.train()
    torch.manual_seed(1)
    c = ours(x)[0]
    torch.manual_seed(1)
    d = ours(x)[0]
    assert torch.equal(c, d) and not torch.equal(a, c)  # dropout active, driven by torch's RNG
    ref = nn.GRU(4, 8, num_layers=3, dropout=0.5).to(device)
    ref.load_state_dict(ours.state_dict())
    ref.train()
    # Same semantics as nn.GRU: dropout masks from F.dropout between layers, not on the last.
    ours.dropout = ref.dropout = 1.0
    e = ours(x)[0]
    assert torch.allclose(e, ref(x)[0], atol=1e-6)  # layers after a dropped-out input agree exactly


def test_backward_in_eval_mode(device):
    ours = fastgru.GRU(4, 8).to(device).eval()
    x = torch.randn(3, 2, 4, device=device, requires_grad=True)
    ours(x)[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_state_dict_loads_both_ways():
    ref = nn.GRU(5, 7, num_layers=2, bidirectional=True, bias=False)
    ours = fastgru.GRU(5, 7, num_layers=2, bidirectional=True, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    ours.load_state_dict(ref.state_dict())
    ref2 = nn.GRU(5, 7, num_layers=2, bidirectional=True, bias=False)
    ref2.load_state_dict(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), ref2.parameters()))


@pytest.mark.parametrize("kwargs", [dict(), dict(num_layers=2, bias=False, batch_first=True, dropout=0.1, bidirectional=True)], ids=["default", "all"])
def test_repr_matches(kwargs):
    assert repr(fastgru.GRU(5, 3, **kwargs)) == repr(nn.GRU(5, 3, **kwargs))


def test_pickle_save_load_deepcopy(tmp_path, device):
    ours = fastgru.GRU(4, 8, num_layers=2).to(device)
    x = torch.randn(3, 2, 4, device=device)
    expect = ours(x)[0]
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert torch.equal(clone(x)[0], expect)
    torch.save(ours, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    assert torch.equal(loaded(x)[0], expect)


def test_shared_parameters_stay_shared(device):
    a = fastgru.GRU(4, 4).to(device)
    b = fastgru.GRU(4, 4).to(device)
    b.weight_hh_l0 = a.weight_hh_l0  # tie
    x = torch.randn(2, 2, 4, device=device)
    (a(x)[0].sum() + b(x)[0].sum()).backward()
    with torch.no_grad():
        a.weight_hh_l0.add_(1.0)
    assert b.weight_hh_l0 is a.weight_hh_l0 and a.weight_hh_l0.grad is not None


def test_device_and_dtype_arguments():
    m = fastgru.GRU(4, 6, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())


def test_gradcheck_float64_through_kernels(device):
    m = fastgru.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True).double().to(device)
    x = torch.randn(2, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.randn(4, 2, 5, dtype=torch.float64, device=device, requires_grad=True)
    params = list(m.parameters())

    def fn(x, h0, *ps):
        weights = [ps[i : i + 4] for i in range(0, len(ps), 4)]
        return fastgru.functional.gru(x, h0, weights, 2, True, True)

    assert torch.autograd.gradcheck(fn, (x, h0, *params), fast_mode=True)
