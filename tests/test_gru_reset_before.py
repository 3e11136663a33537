"""reset_after=False, the original GRU (Cho et al. 2014; Keras' reset_after=False, ONNX's
linear_before_reset=0): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). The kernels (every strategy,
both directions, layers, lengths, dtypes, forward and backward) against fastgru.reference in
float64, the cell, and the module's interface."""

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastgru
from fastgru import functional, reference
from fastgru.testing import check_close, rel_error
from helpers import forward_backward
from test_gru_kernels import STRATEGIES, check_against_reference, make_weights


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("T,B,H,D", [(3, 3, 20, 2), (9, 3, 33, 2)], ids=lambda v: str(v))
def test_layer_matches_reference(T, B, H, D, strategy, device):
    check_against_reference(1, D, T, B, 5, H, torch.float64, device, strategy, reset_after=False)


@pytest.mark.parametrize("strategy", ["rows", "stepwise"])
def test_several_hidden_blocks(strategy, device):
    # H = 70: two 64-wide hidden blocks, so r * h of one block feeds the other's candidate matmul
    # (the phase barrier), and da_r / da_z of both feed each block's carried gradient.
    check_against_reference(1, 2, 4, 3, 6, 70, torch.float64, device, strategy, lengths=torch.tensor([4, 1, 3]),
                            reset_after=False)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
def test_variable_lengths_two_layers(D, strategy, device):
    lengths = torch.tensor([7, 1, 4, 6, 3])
    out, _ = check_against_reference(2, D, 7, 5, 4, 12, torch.float64, device, strategy, lengths=lengths,
                                     reset_after=False)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_batch_first_and_no_bias(batch_first, device):
    check_against_reference(1, 2, 5, 3, 4, 12, torch.float64, device, "stepwise", bias=False,
                            batch_first=batch_first, reset_after=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_dtypes_within_contract(dtype, device):
    check_against_reference(1, 2, 6, 3, 8, 16, dtype, device, "rows", lengths=torch.tensor([6, 2, 5]),
                            reset_after=False)


def test_persistent_with_several_batch_blocks(device):
    check_against_reference(1, 2, 5, 20, 4, 12, torch.float64, device, "persistent",
                            lengths=torch.randint(1, 6, (20,)), reset_after=False)


def test_gradcheck_with_lengths(device):
    # One direction, on purpose: each finite difference is a forward through the interpreter
    # (about 0.4 s here), and the float64 comparisons above hold both directions' gradients to
    # the reference's.
    ws = make_weights(1, 1, 3, 4, torch.float64, device)
    x = torch.randn(4, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.randn(1, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    leaves = ws[0]

    def fn(x, h0, *flat):
        return functional.gru(x, h0, [flat], 1, False, lengths=lengths, reset_after=False)

    assert torch.autograd.gradcheck(fn, (x, h0, *leaves), fast_mode=True)


def test_formulations_differ_and_agree_at_zero_state():
    # The flag takes effect: with h = 0 the two candidates coincide (r * (W_hn 0 + b_hn) vs
    # W_hn (r * 0) + b_hn differ only by r on b_hn -- equal when b_hn = 0), elsewhere they differ.
    a = fastgru.GRU(3, 5, dtype=torch.float64)
    b = fastgru.GRU(3, 5, dtype=torch.float64, reset_after=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        a.bias_hh_l0[10:].zero_()
        b.bias_hh_l0[10:].zero_()
        torch.testing.assert_close(a(x)[0], b(x)[0])
        h0 = torch.randn(1, 2, 5, dtype=torch.float64)
        assert rel_error(a(x, h0)[0], b(x, h0)[0]) > 1e-3


# --- the cell ------------------------------------------------------------------------------


@pytest.mark.parametrize("B,I,H,bias", [(1, 4, 8, True), (3, 5, 20, True), (5, 7, 70, False)], ids=lambda v: str(v))
def test_cell_matches_reference(B, I, H, bias, device):
    ours = fastgru.GRUCell(I, H, bias=bias, reset_after=False).to(device)
    x = torch.randn(B, I, device=device, requires_grad=True)
    hx = torch.randn(B, H, device=device, requires_grad=True)
    ref64 = copy.deepcopy(ours).double()
    with fastgru.backend.using("reference"):
        outs64, grads64 = forward_backward(ref64, x.detach().double().requires_grad_(), hx.detach().double().requires_grad_())
        base, base_g = forward_backward(copy.deepcopy(ours), x, hx)  # the same math in PyTorch, fp32
    outs, grads = forward_backward(ours, x, hx)
    check_close(outs[0], outs64[0], baseline=base[0], name="h'")
    for i, (g, g64, gb) in enumerate(zip(grads, grads64, base_g)):
        check_close(g, g64, torch.float32, baseline=gb, name=f"grad {i}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cell_low_precision(dtype, device):
    ours = fastgru.GRUCell(8, 16, reset_after=False).to(device=device, dtype=dtype)
    x = torch.randn(3, 8, device=device, dtype=dtype)
    hx = torch.randn(3, 16, device=device, dtype=dtype)
    ref64 = copy.deepcopy(ours).double()
    with fastgru.backend.using("reference"):
        expected = ref64(x.double(), hx.double())
    check_close(ours(x, hx), expected, dtype)


def test_cell_gradcheck(device):
    ours = fastgru.GRUCell(3, 5, reset_after=False).double().to(device)
    x = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    h = torch.randn(2, 5, dtype=torch.float64, device=device, requires_grad=True)
    ps = list(ours.parameters())
    fn = lambda x, h, *p: fastgru.functional.gru_cell(x, h, *p, reset_after=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, h, *ps), fast_mode=True)


def test_cell_steps_equal_the_layer(device):
    # Unrolling the cell over time gives the layer's outputs (same parameters, both formulations' API).
    layer = fastgru.GRU(4, 6, reset_after=False, dtype=torch.float64).to(device)
    cell = fastgru.GRUCell(4, 6, reset_after=False, dtype=torch.float64).to(device)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = torch.randn(5, 2, 4, dtype=torch.float64, device=device)
    out, h_n = layer(x)
    h = torch.zeros(2, 6, dtype=torch.float64, device=device)
    for t in range(5):
        h = cell(x[t], h)
        torch.testing.assert_close(h, out[t])
    torch.testing.assert_close(h, h_n[0])


# --- the module's interface ------------------------------------------------------------------


def test_same_parameters_as_nn_gru():
    ours = fastgru.GRU(4, 6, num_layers=2, bidirectional=True, reset_after=False)
    ref = nn.GRU(4, 6, num_layers=2, bidirectional=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict())  # loads both ways
    ref.load_state_dict(ours.state_dict())


def test_repr_pickle_and_old_pickles():
    m = fastgru.GRU(4, 6, reset_after=False)
    assert repr(m) == "GRU(4, 6, reset_after=False)"
    assert repr(fastgru.GRUCell(4, 6, reset_after=False)) == "GRUCell(4, 6, reset_after=False)"
    assert pickle.loads(pickle.dumps(m)).reset_after is False
    # A module pickled before the flag existed loads as nn.GRU's formulation.
    state = fastgru.GRU(4, 6).__dict__.copy()
    del state["reset_after"]
    old = fastgru.GRU.__new__(fastgru.GRU)
    old.__setstate__(state)
    assert old.reset_after is True


def test_bad_flag_and_convert_refuses():
    with pytest.raises(TypeError, match="reset_after"):
        fastgru.GRU(4, 6, reset_after="no")
    with pytest.raises(TypeError, match="reset_after"):
        fastgru.GRUCell(4, 6, reset_after=0)
    model = nn.Sequential(fastgru.GRU(4, 6), fastgru.GRU(6, 6, reset_after=False))
    with pytest.raises(ValueError, match="reset_after=False has no torch.nn equivalent"):
        fastgru.convert(model, to="torch", inplace=True)
    assert isinstance(model[0], fastgru.GRU)  # nothing was swapped before the refusal
    with pytest.raises(ValueError, match="reset_after=False"):
        fastgru.convert(fastgru.GRUCell(4, 6, reset_after=False), to="torch")


def test_packed_sequence_and_cpu_path(device):
    # A PackedSequence through the kernels equals the same batch through the CPU path (PyTorch
    # ops: the reference's math, PyTorch having no operator for this formulation).
    m = fastgru.GRU(3, 5, bidirectional=True, reset_after=False, dtype=torch.float64).to(device)
    x = torch.randn(6, 4, 3, dtype=torch.float64, device=device)
    lengths = torch.tensor([6, 2, 5, 1])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = m(packed)
    with fastgru.backend.using("torch"):
        out_cpu, h_cpu = copy.deepcopy(m).cpu()(pack_padded_sequence(x.cpu(), lengths, enforce_sorted=False))
    torch.testing.assert_close(out.data.cpu(), out_cpu.data)
    torch.testing.assert_close(h_n.cpu(), h_cpu)


def test_gru_attention_passes_the_flag():
    model = fastgru.GRUAttention(3, 5, 2, reset_after=False)
    assert model.encoder.reset_after is False


@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
def test_cpu_path_within_contract(D):
    # The CPU default (PyTorch ops, fastgru.functional.cpu_reset_before) in fp32 against the
    # float64 reference: two layers, lengths (the reverse direction starting at each row's end).
    with fastgru.backend.using("torch"):
        out, _ = check_against_reference(2, D, 7, 5, 4, 12, torch.float32, "cpu", None,
                                         lengths=torch.tensor([7, 1, 4, 6, 3]), reset_after=False)
        check_against_reference(1, D, 5, 3, 4, 12, torch.float32, "cpu", None, batch_first=True, reset_after=False)
    assert torch.all(out[1:, 1] == 0)
