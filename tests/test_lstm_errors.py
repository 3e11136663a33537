"""Each mistake raises what nn.LSTM / nn.LSTMCell raise (the exception type, and a message naming
the argument), before any kernel runs."""

import pytest
import torch
from torch import nn

import fastgru
from test_gru_errors import (
    RNN_CTOR,
    _raises_same,
    assert_bad_lengths_rejected,
    assert_constructor_error_matches,
    assert_each_raises,
    assert_one_layer_dropout_warns,
    forbid_kernels,
)


def _hx(h_shape, c_shape, dtype=torch.float32):
    return torch.randn(*h_shape, dtype=dtype), torch.randn(*c_shape)


# name: (call, a fragment the message must hold)
LSTM_CALLS = {
    "rank4": (lambda m: m(torch.randn(2, 3, 4, 5)), "Expected input to be 2D or 3D, got 4D"),
    "rank1": (lambda m: m(torch.randn(5)), "Expected input to be 2D or 3D, got 1D"),
    "feature-size": (lambda m: m(torch.randn(4, 3, 6)), "input_size. Expected 5, got 6"),
    "h0-shape": (lambda m: m(torch.randn(4, 3, 5), _hx((2, 3, 6), (2, 3, 7))), "hidden[0] size (2, 3, 3)"),
    "h0-batch": (lambda m: m(torch.randn(4, 3, 5), _hx((2, 4, 3), (2, 3, 7))), "hidden[0] size (2, 3, 3)"),
    "c0-shape": (lambda m: m(torch.randn(4, 3, 5), _hx((2, 3, 3), (2, 3, 3))), "hidden[1] size (2, 3, 7)"),
    "hx-rank-unbatched": (lambda m: m(torch.randn(4, 5), _hx((2, 1, 3), (2, 1, 7))), "hx and cx should also be 2-D"),
    "hx-rank-batched": (lambda m: m(torch.randn(4, 3, 5), _hx((2, 3), (2, 7))), "hx and cx should also be 3-D"),
    "hx-one-tensor": (lambda m: m(torch.randn(4, 3, 5), torch.randn(2, 3, 3)), "hx"),
    "hx-three": (lambda m: m(torch.randn(4, 3, 5), (torch.randn(2, 3, 3),) * 3), "hx"),
    "input-dtype": (lambda m: m(torch.randn(4, 3, 5, dtype=torch.float64)), "input dtype"),
    "input-int": (lambda m: m(torch.randint(0, 3, (4, 3, 5))), "dtype"),
    "zero-length": (lambda m: m(torch.randn(0, 3, 5)), "sequence length"),
}


@pytest.mark.parametrize("name", list(LSTM_CALLS))
def test_lstm_forward_errors_match(name):
    call, fragment = LSTM_CALLS[name]
    err = _raises_same(lambda: nn.LSTM(5, 7, num_layers=2, proj_size=3),
                       lambda: fastgru.LSTM(5, 7, num_layers=2, proj_size=3), call)
    assert fragment in str(err)


@pytest.mark.parametrize("which", [0, 1])
def test_state_dtype_mismatch_names_the_state(which):
    hx = [torch.randn(1, 3, 7), torch.randn(1, 3, 7)]
    hx[which] = hx[which].double()
    with pytest.raises(RuntimeError, match=rf"hx\[{which}\] dtype"):
        fastgru.LSTM(5, 7)(torch.randn(4, 3, 5), tuple(hx))


CTOR = {
    **RNN_CTOR,
    "proj-equal": dict(input_size=5, hidden_size=3, proj_size=3),
    "proj-larger": dict(input_size=5, hidden_size=3, proj_size=4),
    "proj-negative": dict(input_size=5, hidden_size=3, proj_size=-1),
    "proj-float": dict(input_size=5, hidden_size=3, proj_size=1.5),
}


@pytest.mark.parametrize("name", list(CTOR))
def test_constructor_errors_match(name):
    # nn's TypeError for a float proj_size is torch.empty's about a size; ours names proj_size.
    assert_constructor_error_matches(nn.LSTM, fastgru.LSTM, CTOR[name], same_message=name != "proj-float")


def test_dropout_with_one_layer_warns():
    assert_one_layer_dropout_warns(fastgru.LSTM, proj_size=2)


CELL_CALLS = {
    "rank3": (lambda m: m(torch.randn(2, 3, 5)), "Expected input to be 1D or 2D, got 3D"),
    "feature-size": (lambda m: m(torch.randn(2, 6)), "input_size: got 6 expected 5"),
    "h-batch": (lambda m: m(torch.randn(2, 5), _hx((3, 3), (3, 3))), "hidden0 batch size 3"),
    "c-batch": (lambda m: m(torch.randn(2, 5), _hx((2, 3), (3, 3))), "hidden1 batch size 3"),
    "h-size": (lambda m: m(torch.randn(2, 5), _hx((2, 4), (2, 3))), "hidden0 has inconsistent hidden_size"),
    "c-size": (lambda m: m(torch.randn(2, 5), _hx((2, 3), (2, 4))), "hidden1 has inconsistent hidden_size"),
    "h-rank": (lambda m: m(torch.randn(2, 5), _hx((1, 2, 3), (2, 3))), "hx[0] to be 1D or 2D"),
    "hx-one-tensor": (lambda m: m(torch.randn(2, 5), torch.randn(2, 3)), "hx"),
}


@pytest.mark.parametrize("name", list(CELL_CALLS))
def test_cell_errors_match(name):
    call, fragment = CELL_CALLS[name]
    err = _raises_same(lambda: nn.LSTMCell(5, 3), lambda: fastgru.LSTMCell(5, 3), call)
    assert fragment in str(err)


def test_errors_raise_before_any_kernel(monkeypatch):
    import fastgru.ops.lstm_cell as cell_ops
    import fastgru.ops.lstm_layer as layer_ops

    forbid_kernels(monkeypatch, (layer_ops, "lstm_layer_forward"), (cell_ops, "lstm_cell_forward"))
    with fastgru.backend.using("interpret"):
        assert_each_raises([call for call, _ in LSTM_CALLS.values()],
                           lambda: fastgru.LSTM(5, 7, num_layers=2, proj_size=3))
        assert_each_raises([call for call, _ in CELL_CALLS.values()], lambda: fastgru.LSTMCell(5, 3))


def test_bad_lengths_rejected():
    x, hx = torch.randn(4, 2, 3), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
    ws = [list(fastgru.LSTM(3, 5).parameters()) + [None]]
    assert_bad_lengths_rejected(lambda lengths: fastgru.functional.lstm(x, hx, ws, 1, lengths=lengths))


def test_strategy_rejected_or_refused():
    with pytest.raises(ValueError, match="strategy"):
        fastgru.LSTM(3, 5, strategy="magic")
    m = fastgru.LSTM(3, 5, strategy="cudnn").eval()
    x = torch.randn(2, 2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="strategy='cudnn' cannot run this call: a gradient is needed in eval mode"):
        m(x)
    with torch.no_grad():
        m(x)  # inference in eval mode means the same in PyTorch's operator: it runs
