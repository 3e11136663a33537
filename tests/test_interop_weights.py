"""Weight converters in fastgru.interop: Keras GRU arrays and ONNX GRU node tensors.

What is checked here is the mapping of the weights, so the modules run on the CPU's PyTorch path
(``backend.using("torch")``, what a CPU user gets; the kernels have their own tests), in float64
where a tight tolerance says the mapping, and not rounding, is right.

* ONNX: onnx's reference evaluator on a one-node model, onnxruntime on the same model, and the
  ONNX backend test cases for the GRU operator (from the installed package's data files when it
  ships them, else from its case generators, which produce the same data).
* Keras: no TensorFlow here; Keras' GRU equations are written out below in numpy, straight from
  Keras' documentation and cell code (gate order z, r, h; kernel multiplies from the right).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fastgru
from fastgru.interop import (
    from_keras,
    from_keras_bidirectional,
    from_onnx,
    to_keras,
    to_keras_bidirectional,
    to_onnx,
)
from helpers import onnx_attributes

F64 = torch.float64


@pytest.fixture(autouse=True)
def _torch_backend():
    with fastgru.backend.using("torch"):
        yield


# The helpers below serve tests/test_lstm_interop.py as well (the LSTM's mappings).


def np_rng(seed):
    return np.random.default_rng(seed)


def close(actual, expected, rtol=1e-10, atol=1e-12):
    """assert_allclose of two arrays or tensors (tensors detached to numpy)."""
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def same_parameters(a, b):
    """Two modules hold the same parameters, exactly, under the same names."""
    sd_a, sd_b = a.state_dict(), b.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        torch.testing.assert_close(sd_b[k], sd_a[k], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Keras' GRU, written out in numpy (independent of fastgru's code).


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def keras_gru(x, kernel, recurrent_kernel, bias=None, reset_after=True, h0=None):
    """keras.layers.GRU(return_sequences=True, return_state=True) with tanh / sigmoid activations.
    x (batch, time, input) -> (outputs (batch, time, units), final state (batch, units))."""
    batch, steps, _ = x.shape
    H = recurrent_kernel.shape[0]
    k_z, k_r, k_h = kernel[:, :H], kernel[:, H : 2 * H], kernel[:, 2 * H :]
    u_z, u_r, u_h = recurrent_kernel[:, :H], recurrent_kernel[:, H : 2 * H], recurrent_kernel[:, 2 * H :]
    if bias is None:
        b_in, b_rec = np.zeros(3 * H), np.zeros(3 * H)
    elif reset_after:
        b_in, b_rec = bias[0], bias[1]
    else:
        b_in, b_rec = bias, np.zeros(3 * H)  # one bias, on the input side
    h = np.zeros((batch, H)) if h0 is None else h0
    outputs = []
    for t in range(steps):
        xt = x[:, t]
        z = _sigmoid(xt @ k_z + b_in[:H] + h @ u_z + b_rec[:H])
        r = _sigmoid(xt @ k_r + b_in[H : 2 * H] + h @ u_r + b_rec[H : 2 * H])
        if reset_after:
            hh = np.tanh(xt @ k_h + b_in[2 * H :] + r * (h @ u_h + b_rec[2 * H :]))
        else:
            hh = np.tanh(xt @ k_h + b_in[2 * H :] + (r * h) @ u_h)
        h = z * h + (1 - z) * hh
        outputs.append(h)
    return np.stack(outputs, axis=1), h


def keras_weights(rng, input_size, H, reset_after=True, bias=True):
    w = [rng.normal(size=(input_size, 3 * H)), rng.normal(size=(H, 3 * H)) * 0.7]
    if bias:
        w.append(rng.normal(size=(2, 3 * H) if reset_after else (3 * H,)))
    return w


def keras_bidirectional(keras_layer, x, fw, bw, **kwargs):
    """keras.layers.Bidirectional(keras_layer) in numpy: the backward layer reads the sequence
    reversed (go_backwards), its outputs are put back in time order, and merge_mode="concat"
    joins forward then backward. ``keras_layer(x, *weights, **kwargs) -> (outputs, *final
    states)`` (keras_gru, keras_lstm) -> (outputs, [each final state stacked forward, backward])."""
    y_f, *states_f = keras_layer(x, *fw, **kwargs)
    y_b, *states_b = keras_layer(x[:, ::-1], *bw, **kwargs)
    return np.concatenate([y_f, y_b[:, ::-1]], axis=-1), [np.stack(pair) for pair in zip(states_f, states_b)]


def keras_round_trip(weights, **kwargs):
    """to_keras(from_keras(*weights, **kwargs)) gives ``weights`` back exactly, in float64 and
    (cast) in float32."""
    for dtype, np_dtype in ((F64, np.float64), (torch.float32, np.float32)):
        back = to_keras(from_keras(*weights, dtype=dtype, **kwargs))
        assert len(back) == len(weights)
        for a, b in zip(back, weights):
            assert a.dtype == np_dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b.astype(np_dtype))


def test_keras_tiny_case_by_hand():
    # input 2, units 2, two steps, batch 1: every number below goes through Keras' equations.
    kernel = np.array([[0.1, -0.2, 0.3, 0.4, -0.5, 0.6], [0.7, 0.8, -0.9, 1.0, 0.2, -0.3]])
    recurrent_kernel = np.array([[0.5, -0.4, 0.3, -0.2, 0.1, 0.9], [-0.6, 0.7, -0.8, 0.2, 0.4, -0.1]])
    bias_after = np.array([[0.05, -0.1, 0.15, -0.2, 0.25, -0.3], [0.3, 0.2, -0.1, 0.05, -0.25, 0.4]])
    x = np.array([[[1.0, -2.0], [0.5, 0.25]]])
    for reset_after, bias in ((True, bias_after), (False, bias_after[0] + 0.5)):
        expected_out, expected_h = keras_gru(x, kernel, recurrent_kernel, bias, reset_after)
        m = from_keras(kernel, recurrent_kernel, bias, reset_after=reset_after, dtype=F64)
        assert m.reset_after is reset_after and m.batch_first and m.hidden_size == 2 and m.input_size == 2
        out, h_n = m(torch.from_numpy(x))
        close(out, expected_out)
        close(h_n[0], expected_h)
    # The two formulations differ on this input, so each test above pins its own.
    a = keras_gru(x, kernel, recurrent_kernel, np.stack([bias_after[0], 0 * bias_after[1]]), True)[1]
    b = keras_gru(x, kernel, recurrent_kernel, bias_after[0], False)[1]
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_keras_random(reset_after, bias):
    rng = np_rng(1 + 2 * reset_after + bias)
    weights = keras_weights(rng, 3, 4, reset_after, bias)
    x, h0 = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4))
    m = from_keras(*weights, reset_after=reset_after, dtype=F64)
    assert m.bias is bias
    out, h_n = m(torch.from_numpy(x), torch.from_numpy(h0)[None])
    expected_out, expected_h = keras_gru(x, *weights[:2], weights[2] if bias else None, reset_after, h0)
    close(out, expected_out)
    close(h_n[0], expected_h)


def test_keras_reset_after_true_is_nn_gru():
    rng = np_rng(7)
    weights = keras_weights(rng, 3, 4, True)
    m = from_keras(*weights, dtype=F64)
    ref = nn.GRU(3, 4, batch_first=True, dtype=F64)
    ref.load_state_dict(m.state_dict())
    x = torch.from_numpy(rng.normal(size=(2, 6, 3)))
    for a, b in zip(m(x), ref(x)):
        close(a, b.detach().numpy())
    close(ref(x)[0], keras_gru(x.numpy(), *weights, reset_after=True)[0])
    # nn.GRU's own weights export the same way.
    for a, b in zip(to_keras(ref), weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_keras_round_trip_arrays(reset_after, bias):
    keras_round_trip(keras_weights(np_rng(11), 3, 4, reset_after, bias), reset_after=reset_after)


@pytest.mark.parametrize("reset_after", [True, False])
def test_to_keras_of_a_trained_module(reset_after):
    # Every parameter non-zero (bias_hh included): Keras' layer computes what the module does.
    m = fastgru.GRU(3, 4, dtype=F64, reset_after=reset_after)
    weights = to_keras(m)
    assert weights[2].shape == ((2, 12) if reset_after else (12,))
    x = torch.randn(5, 2, 3, dtype=F64)
    out, h_n = m(x)
    expected_out, expected_h = keras_gru(x.transpose(0, 1).numpy(), *weights, reset_after=reset_after)
    close(out.transpose(0, 1), expected_out)
    close(h_n[0], expected_h)
    back = from_keras(*weights, reset_after=reset_after, batch_first=False, dtype=F64)
    close(back(x)[0], out.detach().numpy())


def test_to_keras_layers_and_cells():
    # A stack exports layer by layer; stacked Keras layers (numpy) reproduce it.
    m = fastgru.GRU(3, 4, num_layers=2, batch_first=True, dtype=F64, reset_after=False)
    x = torch.randn(2, 5, 3, dtype=F64)
    out, h_n = m(x)
    y = x.numpy()
    for k in range(2):
        y, h = keras_gru(y, *to_keras(m, layer=k), reset_after=False)
        close(h_n[k], h)
    close(out, y)
    # Cells: one step of the layer.
    for cell in (fastgru.GRUCell(3, 4, dtype=F64, reset_after=False), nn.GRUCell(3, 4, dtype=F64)):
        reset_after = getattr(cell, "reset_after", True)
        xt, h0 = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
        close(cell(xt, h0), keras_gru(xt[:, None].numpy(), *to_keras(cell), reset_after=reset_after, h0=h0.numpy())[1])


@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_bidirectional(reset_after):
    rng = np_rng(21 + reset_after)
    fw, bw = keras_weights(rng, 3, 4, reset_after), keras_weights(rng, 3, 4, reset_after)
    m = from_keras_bidirectional(fw, bw, reset_after=reset_after, dtype=F64)
    assert m.bidirectional and m.batch_first
    x = rng.normal(size=(2, 5, 3))
    out, h_n = m(torch.from_numpy(x))
    expected_out, (expected_h,) = keras_bidirectional(keras_gru, x, fw, bw, reset_after=reset_after)
    close(out, expected_out)
    close(h_n, expected_h)
    for a, b in zip(to_keras_bidirectional(m), fw + bw):
        np.testing.assert_array_equal(a, b)


# Errors ---------------------------------------------------------------------------------------

K3, R3 = np.zeros((3, 12)), np.zeros((4, 12))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.zeros(12), R3), {}, ValueError, r"kernel must be 2-D"),
        ((np.zeros((3, 10)), R3), {}, ValueError, r"kernel must have shape \(input_size, 3 \* hidden_size\)"),
        ((K3, np.zeros((4, 9))), {}, ValueError, r"recurrent_kernel must have shape .* = \(4, 12\)"),
        ((K3, R3, np.zeros(12)), {}, ValueError,
         r"bias must have shape \(2, 12\).*reset_after=True.*reset_after=False"),
        ((K3, R3, np.zeros((2, 12))), {"reset_after": False}, ValueError,
         r"bias must have shape \(12,\).*reset_after=True"),
        ((K3, R3, np.zeros(5)), {"reset_after": False}, ValueError, r"bias must have shape \(12,\), got \(5,\)"),
        (([K3, R3], R3), {}, TypeError, r"kernel must be an array.*unpacked"),
        (("kernel", R3), {}, TypeError, r"kernel must be a numpy array or torch tensor"),
        ((K3, R3.astype(complex)), {}, TypeError, r"recurrent_kernel must hold real numbers"),
        ((K3, R3, np.zeros((2, 12), dtype=bool)), {}, TypeError, r"bias must hold real numbers"),
        ((K3, R3), {"reset_after": "yes"}, TypeError, r"reset_after must be a bool"),
        ((K3, R3), {"dtype": torch.int32}, TypeError, r"dtype must be a floating torch.dtype"),
        ((K3, R3), {"batch_first": 1}, TypeError, r"batch_first must be a bool"),
    ],
)
def test_from_keras_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        from_keras(*args, **kwargs)


def test_to_keras_errors():
    with pytest.raises(ValueError, match=r"num_layers=2.*layer=k"):
        to_keras(fastgru.GRU(3, 4, num_layers=2))
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 2\), got 2"):
        to_keras(fastgru.GRU(3, 4, num_layers=2), layer=2)
    with pytest.raises(ValueError, match=r"bidirectional=True.*to_keras_bidirectional"):
        to_keras(fastgru.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match=r"bidirectional=False.*to_keras\(module\)"):
        to_keras_bidirectional(fastgru.GRU(3, 4))
    with pytest.raises(TypeError, match=r"module must be a fastgru.GRU.*got RNN"):
        to_keras(nn.RNN(3, 4))
    fw = keras_weights(np_rng(0), 3, 4)
    with pytest.raises(TypeError, match=r"forward_weights must be a list"):
        from_keras_bidirectional(fw[0], fw)
    with pytest.raises(ValueError, match=r"backward_weights must hold 2 arrays .* or 3"):
        from_keras_bidirectional(fw, fw[:1])
    with pytest.raises(ValueError, match=r"backward_weights bias must have shape"):
        from_keras_bidirectional(fw, fw[:2] + [np.zeros(12)])
    with pytest.raises(ValueError, match=r"same input_size, hidden_size and use_bias"):
        from_keras_bidirectional(fw, fw[:2])


# ---------------------------------------------------------------------------------------------
# ONNX


# A node's inputs and outputs, in the operator's order.
ONNX_NODES = {
    "GRU": (("X", "W", "R", "B", "sequence_lens", "initial_h"), ("Y", "Y_h")),
    "LSTM": (("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"), ("Y", "Y_h", "Y_c")),
}


def onnx_model(op_type, inputs: dict, opset=14, **attrs):
    """A model of one ``op_type`` ("GRU", "LSTM") node; ``inputs`` maps the node's input names
    to arrays (absent: left out)."""
    pytest.importorskip("onnx")
    from onnx import helper

    order, outputs = ONNX_NODES[op_type]
    names = [n if n in inputs else "" for n in order]
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op_type, names, list(outputs), **attrs)
    elem = helper.np_dtype_to_tensor_dtype(inputs["X"].dtype)
    graph = helper.make_graph(
        [node], op_type.lower(),
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in inputs.items()],
        [helper.make_tensor_value_info(n, elem, None) for n in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def onnx_reference(op_type, inputs: dict, **attrs):
    """onnx's reference evaluator on a one-node model: the node's outputs."""
    model = onnx_model(op_type, inputs, **attrs)
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, inputs)


def onnx_tensors(rng, D, input_size, H, bias=True, gates=3):
    """Random W, R (and B) of a node with ``gates`` gate blocks (the GRU's 3, the LSTM's 4)."""
    t = {"W": rng.normal(size=(D, gates * H, input_size)), "R": rng.normal(size=(D, gates * H, H)) * 0.7}
    if bias:
        t["B"] = rng.normal(size=(D, 2 * gates * H))
    return t


def onnx_y(out, T, B, D, H):
    """fastgru's time-major output (T, B, D * H) in ONNX's Y layout (T, D, B, H)."""
    return out.reshape(T, B, D, H).permute(0, 2, 1, 3)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("bias", [True, False])
def test_onnx_reference_evaluator(lbr, direction, bias):
    pytest.importorskip("onnx")
    D, T, B, I, H = (2 if direction == "bidirectional" else 1), 5, 3, 4, 6
    rng = np_rng(100 + 4 * lbr + 2 * D + bias)
    inputs = {"X": rng.normal(size=(T, B, I)), **onnx_tensors(rng, D, I, H, bias)}
    if bias:  # initial_h as well, where B is given
        inputs["initial_h"] = rng.normal(size=(D, B, H))
    Y, Y_h = onnx_reference("GRU", inputs, hidden_size=H, linear_before_reset=lbr, direction=direction)
    m = from_onnx(inputs["W"], inputs["R"], inputs.get("B"), linear_before_reset=lbr, direction=direction,
                  hidden_size=H, dtype=F64)
    assert m.reset_after is bool(lbr) and m.bidirectional is (D == 2) and m.bias is bias
    h0 = torch.from_numpy(inputs["initial_h"]) if bias else None
    out, h_n = m(torch.from_numpy(inputs["X"]), h0)
    close(onnx_y(out, T, B, D, H), Y)
    close(h_n, Y_h)


@pytest.mark.parametrize("lbr", [0, 1])
def test_onnx_reverse_direction_recipe(lbr):
    pytest.importorskip("onnx")
    T, B, I, H = 4, 2, 3, 5
    rng = np_rng(200 + lbr)
    inputs = {"X": rng.normal(size=(T, B, I)), **onnx_tensors(rng, 1, I, H), "initial_h": rng.normal(size=(1, B, H))}
    Y, Y_h = onnx_reference("GRU", inputs, hidden_size=H, linear_before_reset=lbr, direction="reverse")
    with pytest.raises(ValueError, match=r"direction='reverse'.*direction='forward'.*flip"):
        from_onnx(inputs["W"], inputs["R"], inputs["B"], linear_before_reset=lbr, direction="reverse")
    # The recipe the error gives.
    m = from_onnx(inputs["W"], inputs["R"], inputs["B"], linear_before_reset=lbr, direction="forward", dtype=F64)
    y, h_n = m(torch.from_numpy(inputs["X"]).flip(0), torch.from_numpy(inputs["initial_h"]))
    close(onnx_y(y.flip(0), T, B, 1, H), Y)
    close(h_n, Y_h)


def test_onnx_layout_batch_first():
    pytest.importorskip("onnx")
    T, B, I, H, D = 4, 3, 2, 5, 2
    rng = np_rng(300)
    inputs = {"X": rng.normal(size=(B, T, I)), **onnx_tensors(rng, D, I, H), "initial_h": rng.normal(size=(B, D, H))}
    Y, Y_h = onnx_reference("GRU", inputs, hidden_size=H, linear_before_reset=1, direction="bidirectional",
                            layout=1)
    m = from_onnx(inputs["W"], inputs["R"], inputs["B"], linear_before_reset=1, direction="bidirectional",
                  batch_first=True, dtype=F64)
    out, h_n = m(torch.from_numpy(inputs["X"]), torch.from_numpy(inputs["initial_h"]).transpose(0, 1))
    close(out.reshape(B, T, D, H), Y)  # layout=1: Y is (batch, seq, D, H)
    close(h_n.transpose(0, 1), Y_h)  # and Y_h (batch, D, H)


@pytest.mark.parametrize("lbr", [0, 1])
def test_onnxruntime(lbr):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    T, B, I, H, D = 6, 2, 3, 4, 2
    rng = np_rng(400 + lbr)
    inputs = {"X": rng.normal(size=(T, B, I)), **onnx_tensors(rng, D, I, H), "initial_h": rng.normal(size=(D, B, H))}
    inputs = {k: v.astype(np.float32) for k, v in inputs.items()}
    model = onnx_model("GRU", inputs, hidden_size=H, linear_before_reset=lbr, direction="bidirectional")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h = session.run(None, inputs)
    m = from_onnx(inputs["W"], inputs["R"], inputs["B"], linear_before_reset=lbr, direction="bidirectional", dtype=F64)
    out, h_n = m(torch.from_numpy(inputs["X"]).double(), torch.from_numpy(inputs["initial_h"]).double())
    close(onnx_y(out, T, B, D, H), Y, rtol=1e-5, atol=1e-5)
    close(h_n, Y_h, rtol=1e-5, atol=1e-5)


BACKEND_CASES = [
    "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
    "test_gru_reverse", "test_gru_bidirectional",
]


def onnx_backend_case(name, op):
    """(model, inputs, expected outputs) of an ONNX backend node test case of operator ``op``
    ("gru", "lstm")."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node" / name
    if (folder / "model.onnx").exists():
        data = folder / "test_data_set_0"

        def load(prefix):
            files = sorted(data.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
            return [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in files]

        return onnx.load(str(folder / "model.onnx")), load("input"), load("output")
    # This onnx install ships the generators of those files rather than the files. Importing the
    # operator's generator module runs its exports (seeded as for the published data), which
    # register their cases with the package's case list.
    try:
        import onnx.backend.test.case.node as node_cases

        importlib.import_module(f"onnx.backend.test.case.node.{op}")
        cases = {c.name: c for c in node_cases._NodeTestCases}
    except (ImportError, AttributeError) as e:  # pragma: no cover - depends on the onnx version
        pytest.skip(f"the ONNX backend {op.upper()} cases are not available in this onnx install: {e}")
    if name not in cases:
        pytest.skip(f"{name} is not among this onnx version's {op.upper()} backend cases")
    inputs, outputs = cases[name].data_sets[0]
    return cases[name].model, list(inputs), list(outputs)


def backend_case_node(model):
    """A backend case's one node and its attributes, ``direction`` read as a str, and both
    ``direction`` ("forward") and ``layout`` (0) present, ONNX's defaults where not given."""
    node = model.graph.node[0]
    attrs = {"direction": "forward", "layout": 0, **onnx_attributes(node)}
    if isinstance(attrs["direction"], bytes):
        attrs["direction"] = attrs["direction"].decode()
    return node, attrs


def as_onnx_outputs(out, states, layout):
    """A module's results as a node's outputs, {"Y", "Y_h"(, "Y_c")}, from ``out`` and the final
    ``states`` (h_n(, c_n)), in the node's ``layout`` (0: time-major, Y (T, D, B, H); 1:
    batch-first, Y (B, T, D, H) and the states (B, D, H))."""
    D, H = states[0].shape[0], states[0].shape[2]
    if layout:
        Y, finals = out.reshape(out.shape[0], out.shape[1], D, H), [s.transpose(0, 1) for s in states]
    else:
        Y, finals = onnx_y(out, out.shape[0], out.shape[1], D, H), list(states)
    return dict(zip(("Y", "Y_h", "Y_c"), [Y, *finals]))


def check_backend_outputs(node, ours, expected):
    """Each output the case's node names matches its published value (computed in float32)."""
    present = [n for n in node.output if n]
    assert len(present) == len(expected)
    for output_name, want in zip(present, expected):
        close(ours[output_name], want.astype(np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BACKEND_CASES)
def test_onnx_backend_cases(name):
    model, inputs, expected = onnx_backend_case(name, "gru")
    node, attrs = backend_case_node(model)
    unsupported = set(attrs) - {"hidden_size", "linear_before_reset", "direction", "layout"}
    if unsupported:
        pytest.skip(f"{name}: attributes {sorted(unsupported)} have no fastgru equivalent")
    feeds = dict(zip([n for n in node.input if n], inputs))
    if "sequence_lens" in feeds:
        pytest.skip(f"{name}: sequence_lens cases are not mapped here")
    direction, layout = attrs["direction"], attrs["layout"]
    lbr = attrs.get("linear_before_reset", 0)
    x = torch.from_numpy(feeds["X"]).double()
    h0 = torch.from_numpy(feeds["initial_h"]).double() if "initial_h" in feeds else None
    if layout and h0 is not None:
        h0 = h0.transpose(0, 1)
    # A single reverse direction: the forward module on the time-reversed input (see from_onnx).
    flip = direction == "reverse"
    t_dim = 1 if layout else 0
    m = from_onnx(feeds["W"], feeds["R"], feeds.get("B"), linear_before_reset=lbr,
                  direction="forward" if flip else direction, hidden_size=attrs.get("hidden_size"),
                  batch_first=bool(layout), dtype=F64)
    out, h_n = m(x.flip(t_dim) if flip else x, h0)
    if flip:
        out = out.flip(t_dim)
    check_backend_outputs(node, as_onnx_outputs(out, (h_n,), layout), expected)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_onnx_round_trip(reset_after, bidirectional, bias):
    m = fastgru.GRU(3, 4, bias=bias, bidirectional=bidirectional, dtype=F64, reset_after=reset_after)
    d = to_onnx(m)
    D = 2 if bidirectional else 1
    assert d["W"].shape == (D, 12, 3) and d["R"].shape == (D, 12, 4) and d["hidden_size"] == 4
    assert d["linear_before_reset"] == int(reset_after)
    assert d["direction"] == ("bidirectional" if bidirectional else "forward")
    assert (d["B"] is None) is (not bias) and (not bias or d["B"].shape == (D, 24))
    back = from_onnx(**d, dtype=F64)
    same_parameters(m, back)
    x = torch.randn(5, 2, 3, dtype=F64)
    for a, b in zip(back(x), m(x)):
        close(a, b.detach().numpy())
    # Torch tensors are accepted as well as numpy arrays.
    again = from_onnx(*(torch.from_numpy(d[k]) if d[k] is not None else None for k in "WRB"),
                      linear_before_reset=d["linear_before_reset"], direction=d["direction"], dtype=F64)
    close(again(x)[1], m(x)[1].detach().numpy())


def test_to_onnx_layers_chain():
    # A stack is a chain of nodes: each layer exported on its own and chained reproduces it.
    m = fastgru.GRU(3, 4, num_layers=2, bidirectional=True, dtype=F64, reset_after=False)
    x = torch.randn(5, 2, 3, dtype=F64)
    out, h_n = m(x)
    y, states = x, []
    for k in range(2):
        y, h = from_onnx(**to_onnx(m, layer=k), dtype=F64)(y)
        states.append(h)
    close(y, out.detach().numpy())
    close(torch.cat(states), h_n.detach().numpy())
    assert to_onnx(nn.GRU(3, 4))["linear_before_reset"] == 1
    assert to_onnx(fastgru.GRU(3, 4, dtype=torch.bfloat16))["W"].dtype == np.float32


W1, R1 = np.zeros((1, 12, 3)), np.zeros((1, 12, 4))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((W1, R1), {"direction": "reverse"}, ValueError, r"direction='reverse'.*bidirectional=True.*flip"),
        ((W1, R1), {"direction": "sideways"}, ValueError, r"direction must be one of"),
        ((W1, R1), {"linear_before_reset": 2}, ValueError, r"linear_before_reset must be 0 or 1, got 2"),
        ((W1, R1), {"linear_before_reset": "1"}, ValueError, r"linear_before_reset must be 0 or 1"),
        ((W1[0], R1), {}, ValueError, r"W must be 3-D, \(num_directions, 3 \* hidden_size, input_size\)"),
        ((W1, R1[0]), {}, ValueError, r"R must be 3-D"),
        ((W1, np.zeros((1, 12, 5))), {}, ValueError, r"R must be 3-D"),
        ((W1, R1, np.zeros((1, 12))), {}, ValueError,
         r"B must have shape \(num_directions, 6 \* hidden_size\) = \(1, 24\)"),
        ((np.zeros((2, 12, 3)), np.zeros((2, 12, 4))), {}, ValueError, r"W has num_directions=2.*bidirectional"),
        ((W1, R1), {"direction": "bidirectional"}, ValueError, r"W has num_directions=1 .* needs 2"),
        ((W1, R1), {"hidden_size": 5}, ValueError, r"hidden_size=5 does not match R"),
        ((list(W1), R1), {}, TypeError, r"W must be an array"),
        ((W1, None), {}, TypeError, r"R must be a numpy array or torch tensor"),
        ((W1, R1), {"dtype": "float32"}, TypeError, r"dtype must be a floating torch.dtype"),
    ],
)
def test_from_onnx_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        from_onnx(*args, **kwargs)


def test_to_onnx_errors():
    with pytest.raises(ValueError, match=r"to_onnx: the module has num_layers=3.*layer=k"):
        to_onnx(fastgru.GRU(3, 4, num_layers=3))
    with pytest.raises(TypeError, match=r"to_onnx: module must be"):
        to_onnx(nn.RNN(3, 4))
    with pytest.raises(ValueError, match=r"a GRUCell has a single layer"):
        to_onnx(fastgru.GRUCell(3, 4), layer=1)
