"""fastgru.interop for the LSTM: Keras LSTM arrays, ONNX LSTM node tensors, and torch.onnx.export
of fastgru.LSTM run in onnxruntime.

The weight mappings are checked on the CPU's PyTorch path (``backend.using("torch")``) in
float64, where a tight tolerance says the mapping, and not rounding, is right:

* Keras: no TensorFlow here; Keras' LSTM equations are written out below in numpy from Keras'
  LSTMCell (gate order i, f, c, o; kernel multiplies from the right; one bias).
* ONNX: onnx's reference evaluator on a one-node LSTM model (gate order i, o, f, c, written by
  ONNX, not by fastgru), and the ONNX backend test cases for the LSTM operator.

The export cases hold onnxruntime to the float32 numerics contract of fastgru.testing (against a
float64 run of the module, no worse than BASELINE_FACTOR times PyTorch's own float32 error), as
tests/test_onnx_export.py does for the GRU. Each torch.onnx.export takes a second or two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fastgru
from fastgru import backend
from fastgru.interop import (
    from_keras,
    from_keras_bidirectional,
    from_onnx,
    lstm_from_onnx,
    lstm_to_onnx,
    to_keras,
    to_keras_bidirectional,
    to_onnx,
)
from helpers import compare_with_ort, export_inputs, exported_nodes, onnx_attributes, onnx_export, ort_session
from test_interop_weights import (
    as_onnx_outputs,
    backend_case_node,
    check_backend_outputs,
    close,
    keras_bidirectional,
    keras_round_trip,
    np_rng,
    onnx_backend_case,
    onnx_reference,
    onnx_tensors,
    onnx_y,
    same_parameters,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _torch_backend():
    with backend.using("torch"):
        yield


# ---------------------------------------------------------------------------------------------
# Keras' LSTM, written out in numpy (independent of fastgru's code).


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def keras_lstm(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None):
    """keras.layers.LSTM(return_sequences=True, return_state=True), activation tanh,
    recurrent_activation sigmoid. x (batch, time, input) -> (outputs (batch, time, units),
    final h (batch, units), final c (batch, units))."""
    batch, steps, _ = x.shape
    H = recurrent_kernel.shape[0]
    b = np.zeros(4 * H) if bias is None else bias
    h = np.zeros((batch, H)) if h0 is None else h0
    c = np.zeros((batch, H)) if c0 is None else c0
    outputs = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent_kernel + b
        z0, z1, z2, z3 = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        i, f, o = _sigmoid(z0), _sigmoid(z1), _sigmoid(z3)
        c = f * c + i * np.tanh(z2)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def keras_weights(rng, input_size, H, bias=True):
    w = [rng.normal(size=(input_size, 4 * H)), rng.normal(size=(H, 4 * H)) * 0.7]
    if bias:
        w.append(rng.normal(size=(4 * H,)))
    return w


@pytest.mark.parametrize("bias", [True, False])
def test_keras_lstm_equations(bias):
    rng = np_rng(1 + bias)
    weights = keras_weights(rng, 3, 4, bias)
    x, h0, c0 = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    m = from_keras(*weights, cell="lstm", dtype=F64)
    assert isinstance(m, fastgru.LSTM) and m.batch_first and m.bias is bias
    assert (m.input_size, m.hidden_size, m.num_layers, m.proj_size, m.bidirectional) == (3, 4, 1, 0, False)
    out, (h_n, c_n) = m(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    expected_out, expected_h, expected_c = keras_lstm(x, *weights[:2], weights[2] if bias else None, h0, c0)
    close(out, expected_out)
    close(h_n[0], expected_h)
    close(c_n[0], expected_c)
    if bias:
        assert not m.bias_hh_l0.any()  # Keras' one bias goes to bias_ih
    # "LSTM" in any case names the same mapping.
    close(from_keras(*weights, cell="LSTM", dtype=F64)(torch.from_numpy(x))[0], m(torch.from_numpy(x))[0])


def test_keras_gate_order_is_nn_lstm():
    """torch.nn.LSTM's own forward, exported by to_keras, is what Keras' equations compute: the
    (i, f, g, o) / (i, f, c, o) orders agree, and bias = bias_ih + bias_hh."""
    ref = nn.LSTM(3, 4, batch_first=True, dtype=F64)
    with torch.no_grad():
        ref.bias_hh_l0.normal_()  # both biases non-zero
    x = torch.randn(2, 6, 3, dtype=F64)
    out, (h_n, c_n) = ref(x)
    weights = to_keras(ref)
    assert [w.shape for w in weights] == [(3, 16), (4, 16), (16,)]
    expected_out, expected_h, expected_c = keras_lstm(x.numpy(), *weights)
    close(out, expected_out)
    close(h_n[0], expected_h)
    close(c_n[0], expected_c)
    # Swapping any two gate blocks changes the result: the comparison above pins the order.
    swapped = [w.copy() for w in weights]
    for w in swapped[:2]:
        w[:, :4], w[:, 12:] = w[:, 12:].copy(), w[:, :4].copy()
    assert np.abs(keras_lstm(x.numpy(), *swapped)[0] - expected_out).max() > 1e-3


@pytest.mark.parametrize("bias", [True, False])
def test_keras_lstm_round_trip_arrays(bias):
    keras_round_trip(keras_weights(np_rng(11), 3, 4, bias), cell="lstm")


def test_to_keras_lstm_layers_and_cells():
    # A trained stack (bias_hh non-zero) exports layer by layer; stacked Keras layers reproduce it.
    m = fastgru.LSTM(3, 4, num_layers=2, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h_n, c_n) = m(x)
    y = x.transpose(0, 1).numpy()
    for k in range(2):
        y, h, c = keras_lstm(y, *to_keras(m, layer=k))
        close(h_n[k], h)
        close(c_n[k], c)
    close(out.transpose(0, 1), y)
    # Cells: one step of the layer.
    for cell in (fastgru.LSTMCell(3, 4, dtype=F64), nn.LSTMCell(3, 4, dtype=F64), nn.LSTMCell(3, 4, bias=False)):
        xt, h0, c0 = (torch.randn(2, n, dtype=cell.weight_ih.dtype) for n in (3, 4, 4))
        h1, c1 = cell(xt, (h0, c0))
        weights = to_keras(cell)
        assert len(weights) == (3 if cell.bias else 2)
        _, h, c = keras_lstm(xt[:, None].double().numpy(), *(w.astype(np.float64) for w in weights),
                             h0=h0.double().numpy(), c0=c0.double().numpy())
        tol = {} if cell.weight_ih.dtype == F64 else {"rtol": 1e-5, "atol": 1e-6}
        close(h1.double(), h, **tol)
        close(c1.double(), c, **tol)


def test_keras_lstm_bidirectional():
    rng = np_rng(21)
    fw, bw = keras_weights(rng, 3, 4), keras_weights(rng, 3, 4)
    m = from_keras_bidirectional(fw, bw, cell="lstm", dtype=F64)
    assert isinstance(m, fastgru.LSTM) and m.bidirectional and m.batch_first
    x = rng.normal(size=(2, 5, 3))
    out, (h_n, c_n) = m(torch.from_numpy(x))
    expected_out, (expected_h, expected_c) = keras_bidirectional(keras_lstm, x, fw, bw)
    close(out, expected_out)
    close(h_n, expected_h)
    close(c_n, expected_c)
    for a, b in zip(to_keras_bidirectional(m), fw + bw):
        np.testing.assert_array_equal(a, b)


K4, R4 = np.zeros((3, 16)), np.zeros((4, 16))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((K4, R4), {"cell": "rnn"}, ValueError, r"from_keras: cell must be 'gru' or 'lstm'"),
        ((K4, R4), {"cell": None}, ValueError, r"cell must be 'gru' or 'lstm'"),
        ((K4, R4), {"cell": "lstm", "reset_after": True}, ValueError, r"reset_after=True is a GRU setting"),
        ((np.zeros(16), R4), {"cell": "lstm"}, ValueError, r"kernel must be 2-D, \(input_size, 4 \* hidden_size\)"),
        ((np.zeros((3, 18)), R4), {"cell": "lstm"}, ValueError,
         r"kernel must have shape \(input_size, 4 \* hidden_size\)"),
        ((K4, np.zeros((4, 12))), {"cell": "lstm"}, ValueError,
         r"recurrent_kernel must have shape \(hidden_size, 4 \* hidden_size\) = \(4, 16\)"),
        ((K4, R4, np.zeros((2, 16))), {"cell": "lstm"}, ValueError, r"bias must have shape .* = \(16,\).*one bias"),
        ((K4, R4, np.zeros(32)), {"cell": "lstm"}, ValueError, r"bias must have shape.*CuDNNLSTM.*bias\[:4"),
        # A GRU's arrays given as an LSTM's, and the reverse: the error says which cell to pass.
        ((np.zeros((3, 12)), np.zeros((4, 12))), {"cell": "lstm"}, ValueError, r"a GRU's arrays.*cell='gru'"),
        ((np.zeros((3, 12)), np.zeros((3, 12))), {}, ValueError,
         r"recurrent_kernel must have shape \(hidden_size, 3.*an LSTM's arrays.*cell='lstm'"),
        ((np.zeros((3, 20)), np.zeros((5, 20))), {}, ValueError, r"kernel must have shape.*an LSTM's.*cell='lstm'"),
        ((K4, R4.astype(complex)), {"cell": "lstm"}, TypeError, r"recurrent_kernel must hold real numbers"),
        ((K4, R4), {"cell": "lstm", "dtype": torch.int64}, TypeError, r"dtype must be a floating torch.dtype"),
        ((K4, R4), {"cell": "lstm", "batch_first": None}, TypeError, r"batch_first must be a bool"),
    ],
)
def test_from_keras_lstm_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        from_keras(*args, **kwargs)


def test_to_keras_lstm_errors():
    with pytest.raises(ValueError, match=r"proj_size=2.*Keras' LSTM has no projection"):
        to_keras(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match=r"proj_size=2.*no projection"):
        to_keras_bidirectional(fastgru.LSTM(3, 4, proj_size=2, bidirectional=True))
    with pytest.raises(ValueError, match=r"num_layers=2.*layer=k"):
        to_keras(fastgru.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match=r"bidirectional=True, and a Keras LSTM layer.*Bidirectional\(LSTM"):
        to_keras(fastgru.LSTM(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match=r"bidirectional=False.*to_keras\(module\)"):
        to_keras_bidirectional(nn.LSTM(3, 4))
    with pytest.raises(ValueError, match=r"an LSTMCell has a single layer"):
        to_keras(fastgru.LSTMCell(3, 4), layer=1)
    with pytest.raises(TypeError, match=r"module must be a fastgru.GRU, GRUCell, LSTM or LSTMCell.*got RNN"):
        to_keras(nn.RNN(3, 4))
    fw = keras_weights(np_rng(0), 3, 4)
    with pytest.raises(ValueError, match=r"backward_weights bias must have shape \(4 \* hidden_size,\)"):
        from_keras_bidirectional(fw, fw[:2] + [np.zeros(12)], cell="lstm")
    with pytest.raises(ValueError, match=r"same input_size, hidden_size and use_bias"):
        from_keras_bidirectional(fw, fw[:2], cell="lstm")
    with pytest.raises(ValueError, match=r"reset_after=False is a GRU setting"):
        from_keras_bidirectional(fw, fw, cell="lstm", reset_after=False)


# ---------------------------------------------------------------------------------------------
# ONNX weights


def onnx_lstm_tensors(rng, D, input_size, H, bias=True):
    return onnx_tensors(rng, D, input_size, H, bias, gates=4)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("bias", [True, False])
def test_onnx_lstm_reference_evaluator(direction, bias):
    D, T, B, I, H = (2 if direction == "bidirectional" else 1), 5, 3, 4, 6
    rng = np_rng(100 + 2 * D + bias)
    inputs = {"X": rng.normal(size=(T, B, I)), **onnx_lstm_tensors(rng, D, I, H, bias)}
    if bias:  # initial_h and initial_c as well, where B is given
        inputs["initial_h"] = rng.normal(size=(D, B, H))
        inputs["initial_c"] = rng.normal(size=(D, B, H))
    Y, Y_h, Y_c = onnx_reference("LSTM", inputs, hidden_size=H, direction=direction)
    m = from_onnx(inputs["W"], inputs["R"], inputs.get("B"), cell="lstm", direction=direction, hidden_size=H,
                  dtype=F64)
    assert isinstance(m, fastgru.LSTM) and m.bidirectional is (D == 2) and m.bias is bias and not m.batch_first
    state = (torch.from_numpy(inputs["initial_h"]), torch.from_numpy(inputs["initial_c"])) if bias else None
    out, (h_n, c_n) = m(torch.from_numpy(inputs["X"]), state)
    close(onnx_y(out, T, B, D, H), Y)
    close(h_n, Y_h)
    close(c_n, Y_c)


def test_onnx_lstm_layout_batch_first_and_zero_peepholes():
    T, B, I, H, D = 4, 3, 2, 5, 2
    rng = np_rng(300)
    inputs = {"X": rng.normal(size=(B, T, I)), **onnx_lstm_tensors(rng, D, I, H),
              "initial_h": rng.normal(size=(B, D, H)), "initial_c": rng.normal(size=(B, D, H)),
              "P": np.zeros((D, 3 * H))}
    Y, Y_h, Y_c = onnx_reference("LSTM", inputs, hidden_size=H, direction="bidirectional", layout=1, input_forget=0)
    # An all-zero P is no peephole at all: accepted, as is input_forget=0.
    m = from_onnx(inputs["W"], inputs["R"], inputs["B"], cell="lstm", P=inputs["P"], input_forget=0,
                  direction="bidirectional", batch_first=True, dtype=F64)
    state = tuple(torch.from_numpy(inputs[k]).transpose(0, 1) for k in ("initial_h", "initial_c"))
    out, (h_n, c_n) = m(torch.from_numpy(inputs["X"]), state)
    close(out.reshape(B, T, D, H), Y)  # layout=1: Y is (batch, seq, D, H)
    close(h_n.transpose(0, 1), Y_h)  # Y_h and Y_c (batch, D, H)
    close(c_n.transpose(0, 1), Y_c)


def test_onnx_lstm_gate_order():
    """ONNX's (i, o, f, c) against nn.LSTM's (i, f, g, o), block by block."""
    H = 2
    blocks = torch.arange(4.0).repeat_interleave(H)  # i -> 0, f -> 1, g -> 2, o -> 3
    assert lstm_to_onnx(blocks).tolist() == torch.tensor([0.0, 3, 1, 2]).repeat_interleave(H).tolist()
    assert torch.equal(lstm_from_onnx(lstm_to_onnx(blocks)), blocks)
    assert np.array_equal(lstm_from_onnx(lstm_to_onnx(blocks.numpy())), blocks.numpy())
    ref = nn.LSTM(3, H)
    d = to_onnx(ref)
    w = ref.weight_ih_l0.detach().numpy()
    for onnx_block, torch_block in enumerate((0, 3, 1, 2)):
        np.testing.assert_array_equal(d["W"][0, onnx_block * H : (onnx_block + 1) * H],
                                      w[torch_block * H : (torch_block + 1) * H])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_onnx_lstm_round_trip(bidirectional, bias):
    m = fastgru.LSTM(3, 4, bias=bias, bidirectional=bidirectional, dtype=F64)
    d = to_onnx(m)
    D = 2 if bidirectional else 1
    assert set(d) == {"W", "R", "B", "direction", "hidden_size", "cell"} and d["cell"] == "lstm"
    assert d["W"].shape == (D, 16, 3) and d["R"].shape == (D, 16, 4) and d["hidden_size"] == 4
    assert d["direction"] == ("bidirectional" if bidirectional else "forward")
    assert (d["B"] is None) is (not bias) and (not bias or d["B"].shape == (D, 32))
    back = from_onnx(**d, dtype=F64)
    same_parameters(m, back)
    # The exported node computes the module (onnx's evaluator on the dict's tensors).
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h_n, c_n) = m(x)
    feeds = {"X": x.numpy(), **{k: d[k] for k in "WRB" if d[k] is not None}}
    Y, Y_h, Y_c = onnx_reference("LSTM", feeds, hidden_size=4, direction=d["direction"])
    close(onnx_y(out, 5, 2, D, 4), Y)
    close(h_n, Y_h)
    close(c_n, Y_c)


def test_to_onnx_lstm_layers_chain_and_cells():
    m = fastgru.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h_n, c_n) = m(x)
    y, hs, cs = x, [], []
    for k in range(2):
        y, (h, c) = from_onnx(**to_onnx(m, layer=k), dtype=F64)(y)
        hs.append(h)
        cs.append(c)
    close(y, out)
    close(torch.cat(hs), h_n)
    close(torch.cat(cs), c_n)
    assert to_onnx(fastgru.LSTM(3, 4, dtype=torch.bfloat16))["W"].dtype == np.float32
    cell = nn.LSTMCell(3, 4, dtype=F64)
    d = to_onnx(cell)
    assert d["W"].shape == (1, 16, 3) and d["direction"] == "forward"
    xt, h0, c0 = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64), torch.randn(2, 4, dtype=F64)
    h1, c1 = cell(xt, (h0, c0))
    _, (h, c) = from_onnx(**d, dtype=F64)(xt[None], (h0[None], c0[None]))
    close(h[0], h1)
    close(c[0], c1)


BACKEND_CASES = ["test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_batchwise",
                 "test_lstm_bidirectional", "test_lstm_with_peepholes"]


@pytest.mark.parametrize("name", BACKEND_CASES)
def test_onnx_lstm_backend_cases(name):
    model, inputs, expected = onnx_backend_case(name, "lstm")
    node, attrs = backend_case_node(model)
    assert not set(attrs) - {"hidden_size", "direction", "layout"}, attrs
    feeds = dict(zip([n for n in node.input if n], inputs))
    direction, layout = attrs["direction"], attrs["layout"]
    if "P" in feeds and np.any(feeds["P"]):  # peepholes: refused, by name
        with pytest.raises(ValueError, match=r"P holds non-zero peephole weights"):
            from_onnx(feeds["W"], feeds["R"], feeds.get("B"), cell="lstm", P=feeds["P"], direction=direction)
        return
    m = from_onnx(feeds["W"], feeds["R"], feeds.get("B"), cell="lstm", direction=direction,
                  hidden_size=attrs.get("hidden_size"), batch_first=bool(layout), dtype=F64)
    state = None
    if "initial_h" in feeds:
        state = tuple(torch.from_numpy(feeds[k]).double() for k in ("initial_h", "initial_c"))
        state = tuple(s.transpose(0, 1) for s in state) if layout else state
    out, (h_n, c_n) = m(torch.from_numpy(feeds["X"]).double(), state)
    check_backend_outputs(node, as_onnx_outputs(out, (h_n, c_n), layout), expected)


W4, R4_ = np.zeros((1, 16, 3)), np.zeros((1, 16, 4))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((W4, R4_), {"cell": "lstm", "P": np.full((1, 12), 0.1)}, ValueError, r"P holds non-zero peephole weights"),
        ((W4, R4_), {"cell": "lstm", "P": np.zeros((1, 9))}, ValueError,
         r"P \(the peephole weights\) must have shape \(num_directions, 3 \* hidden_size\) = \(1, 12\)"),
        ((W4, R4_), {"cell": "lstm", "P": [0.0] * 12}, TypeError, r"P must be an array"),
        ((W4, R4_), {"cell": "lstm", "input_forget": 1}, ValueError, r"input_forget=1 .* no fastgru / torch.nn.LSTM"),
        ((W4, R4_), {"cell": "lstm", "input_forget": 2}, ValueError, r"input_forget must be 0 or 1, got 2"),
        ((W4, R4_), {"cell": "lstm", "linear_before_reset": 1}, ValueError,
         r"linear_before_reset=1 is a GRU attribute"),
        ((W4, R4_), {"cell": "lstm", "direction": "reverse"}, ValueError, r"direction='reverse'.*torch.nn.LSTM.*flip"),
        ((np.zeros((1, 12, 3)), np.zeros((1, 12, 4))), {"cell": "lstm"}, ValueError,
         r"R must be 3-D, \(num_directions, 4 \* hidden_size, hidden_size\) with gates i, o, f, c.*cell='gru'"),
        ((W4, R4_), {}, ValueError, r"R must be 3-D, \(num_directions, 3 \* hidden_size.*ONNX LSTM.*cell='lstm'"),
        ((W4, R4_), {"P": np.zeros((1, 12))}, ValueError, r"P belongs to an ONNX LSTM node.*cell='lstm'"),
        ((W4, R4_), {"input_forget": 0}, ValueError, r"input_forget belongs to an ONNX LSTM node"),
        ((np.zeros((1, 12, 3)), R4_), {"cell": "lstm"}, ValueError,
         r"W must be 3-D, \(num_directions, 4 \* hidden_size, input_size\) = \(1, 16, input_size\)"),
        ((W4, R4_, np.zeros((1, 24))), {"cell": "lstm"}, ValueError,
         r"B must have shape \(num_directions, 8 \* hidden_size\) = \(1, 32\)"),
        ((W4, R4_), {"cell": "lstm", "direction": "bidirectional"}, ValueError, r"W has num_directions=1 .* needs 2"),
        ((W4, R4_), {"cell": "lstm", "hidden_size": 5}, ValueError, r"hidden_size=5 does not match R"),
        ((W4, R4_), {"cell": "cudnn"}, ValueError, r"from_onnx: cell must be 'gru' or 'lstm'"),
    ],
)
def test_from_onnx_lstm_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        from_onnx(*args, **kwargs)


def test_to_onnx_lstm_errors():
    with pytest.raises(ValueError, match=r"to_onnx: the LSTM has proj_size=3, and ONNX's LSTM has no projection"):
        to_onnx(fastgru.LSTM(3, 4, proj_size=3))
    with pytest.raises(ValueError, match=r"to_onnx: the module has num_layers=2.*layer=k"):
        to_onnx(nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 2\), got -1"):
        to_onnx(fastgru.LSTM(3, 4, num_layers=2), layer=-1)


# ---------------------------------------------------------------------------------------------
# torch.onnx.export of fastgru.LSTM, run in onnxruntime

I, H = 5, 6


class _Call(nn.Module):
    """module(x, (h0, c0), lengths=lengths) with the state / lengths taken only when given."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, h0=None, c0=None, lengths=None):
        out, (h_n, c_n) = self.module(x, None if h0 is None else (h0, c0), lengths=lengths)
        return out, h_n, c_n


def _inputs(batch, T, batch_first, state_rows, lengths):
    return export_inputs(batch, T, batch_first, state_rows, lengths, I, H, states=("h0", "c0"))


def _lstm_nodes(proto):
    """The graph's LSTM nodes (no Loop or Scan, standard operators only) and their attributes."""
    nodes = exported_nodes(proto, "LSTM")
    return nodes, [onnx_attributes(n) for n in nodes]


NAMES = ("output", "h_n", "c_n")


# (num_layers, bidirectional, batch_first, bias, explicit (h0, c0), lengths)
EXPORT_CASES = [
    (1, False, False, False, False, True),
    (2, True, True, True, True, True),
]


@pytest.mark.parametrize("layers,bidirectional,batch_first,bias,state,lengths", EXPORT_CASES)
def test_lstm_export(layers, bidirectional, batch_first, bias, state, lengths):
    D = 2 if bidirectional else 1
    lstm = fastgru.LSTM(I, H, num_layers=layers, bias=bias, batch_first=batch_first,
                        bidirectional=bidirectional).eval()
    model = _Call(lstm)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    inputs = _inputs(3, 7, batch_first, layers * D if state else 0, lengths)
    dynamic = {"x": {0: batch, 1: time} if batch_first else {0: time, 1: batch},
               "h0": {1: batch}, "c0": {1: batch}, "lengths": {0: batch}}
    proto = onnx_export(model, inputs, {k: v for k, v in dynamic.items() if k in inputs})

    nodes, attrs = _lstm_nodes(proto)
    assert len(nodes) == layers
    for node, a in zip(nodes, attrs):
        assert a["hidden_size"] == H
        assert a["direction"] == (b"bidirectional" if bidirectional else b"forward")
        assert not {"input_forget", "clip", "activations"} & set(a), a
        assert (node.input[3] != "") == bias  # B
        assert (len(node.input) > 4 and node.input[4] != "") == lengths  # sequence_lens
        assert len(node.input) == 7 and node.input[6] != ""  # initial_c, and no P
        assert len(node.output) == 3
    session = ort_session(proto)
    compare_with_ort(session, model, inputs, NAMES)
    # The batch and time axes are dynamic: another shape runs in the same graph.
    compare_with_ort(session, model, _inputs(4, 10, batch_first, layers * D if state else 0, lengths), NAMES)


def test_lstm_torchscript_exporter():
    """dynamo=False (the deprecated TorchScript exporter) writes the same LSTM nodes."""
    model = _Call(fastgru.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True).eval())
    inputs = _inputs(3, 7, True, 0, True)
    proto = onnx_export(model, inputs, {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}, dynamo=False)
    nodes, _ = _lstm_nodes(proto)
    assert len(nodes) == 2
    session = ort_session(proto)
    compare_with_ort(session, model, inputs, NAMES)
    compare_with_ort(session, model, _inputs(2, 9, True, 0, True), NAMES)


def test_what_onnx_lstm_cannot_express_is_refused():
    """proj_size, dropout between layers in training mode and bfloat16 have no ONNX LSTM form."""
    from fastgru.functional.onnx_forms import lstm_onnx_forward

    x = torch.randn(5, 2, I)
    zeros = torch.zeros(2, 2, H)
    with pytest.raises(RuntimeError, match=r"proj_size=3, and ONNX's LSTM has no projection"):
        lstm_onnx_forward(fastgru.LSTM(I, H, proj_size=3), x, (zeros[:1, :, :3], zeros[:1]), None)
    with pytest.raises(RuntimeError, match="model.eval"):
        lstm_onnx_forward(fastgru.LSTM(I, H, num_layers=2, dropout=0.5).train(), x, (zeros, zeros), None)
    with pytest.raises(TypeError, match="ONNX's LSTM takes"):
        lstm_onnx_forward(fastgru.LSTM(I, H, dtype=torch.bfloat16), x.bfloat16(),
                          (zeros[:1].bfloat16(), zeros[:1].bfloat16()), None)
    with pytest.raises(RuntimeError, match=r"Expected cell size \(1, 2, 6\), got \[1, 2, 5\]"):
        lstm_onnx_forward(fastgru.LSTM(I, H), x, (zeros[:1], zeros[:1, :, :5]), None)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\)"):
        lstm_onnx_forward(fastgru.LSTM(I, H), x, zeros[:1], None)
