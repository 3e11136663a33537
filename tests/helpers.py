"""Shared test helpers: run a module forward+backward and collect every gradient; read ONNX nodes
and export models to ONNX, run them in onnxruntime and hold them to the numerics contract."""

import copy
import io
import warnings

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence


def _data(t):
    return t.data if isinstance(t, PackedSequence) else t


def forward_backward(module, x, hx=None, seed=0):
    """Run module(x, hx), backprop random cotangents (fixed by ``seed``) through every output.
    Returns (outputs, grads) where grads covers x (if it requires grad), hx and all parameters."""
    out = module(x, hx) if hx is not None else module(x)
    outs = out if isinstance(out, tuple) else (out,)
    outs = [_data(o) for o in outs]
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in outs)
    leaves = [t for t in (_data(x), hx) if t is not None and t.requires_grad] + list(module.parameters())
    grads = torch.autograd.grad(loss, leaves, allow_unused=False)
    return [o.detach() for o in outs], list(grads)


# -- ONNX: reading nodes, and torch.onnx.export run in onnxruntime (tests/test_onnx_export.py for
# the GRU, tests/test_lstm_interop.py for the LSTM). onnx, onnxruntime and onnxscript are
# optional: each function skips the calling test without them.


def export_deps():
    """(onnx, onnxruntime), skipping the test where they or onnxscript (which
    torch.onnx.export(dynamo=True) builds the graph with) are not installed."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return onnx, ort


def onnx_attributes(node) -> dict:
    """An ONNX node's attributes, name -> value (strings as bytes)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def onnx_export(model, inputs: dict, dynamic, dynamo=True):
    """torch.onnx.export of ``model`` called with keyword ``inputs`` -> the ONNX ModelProto.
    ``dynamic``: dynamic_shapes (dynamo=True) or dynamic_axes (the TorchScript exporter)."""
    onnx, _ = export_deps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, (), kwargs=inputs, dynamo=True, dynamic_shapes=dynamic, verbose=False)
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(model, (), buffer, kwargs=inputs, dynamo=False, input_names=list(inputs),
                          dynamic_axes=dynamic, opset_version=17)
        return onnx.load_from_string(buffer.getvalue())


def exported_nodes(proto, op_type: str) -> list:
    """The ``op_type`` nodes ("GRU", "LSTM") of an exported graph, which must hold no Loop or
    Scan and only standard-domain operators."""
    ops = [n.op_type for n in proto.graph.node]
    assert not {"Loop", "Scan"} & set(ops), ops
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node), {n.domain for n in proto.graph.node}
    return [n for n in proto.graph.node if n.op_type == op_type]


def ort_session(proto):
    """An onnxruntime CPU session of ``proto`` on one thread."""
    _, ort = export_deps()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def compare_with_ort(session, model, inputs: dict, names):
    """onnxruntime's outputs against the module's, held to fastgru.testing's float32 contract:
    relative error against a float64 run ("reference" backend) no worse than the float32 run's
    ("torch" backend: what runs on a CPU). ``names``: the outputs' names, in order."""
    from fastgru import backend
    from fastgru.testing import check_close

    feeds = [i.name for i in session.get_inputs()]
    assert set(feeds) == set(inputs), (feeds, list(inputs))
    got = [torch.from_numpy(o) for o in session.run(None, {n: inputs[n].numpy() for n in feeds})]
    with torch.no_grad(), backend.using("torch"):
        base = model(**inputs)
    with torch.no_grad(), backend.using("reference"):
        ref = copy.deepcopy(model).double()(
            **{k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
        )
    assert len(got) == len(base) == len(names)
    for name, g, b, r in zip(names, got, base, ref):
        assert g.shape == b.shape, (name, g.shape, b.shape)
        check_close(g, r, torch.float32, baseline=b, name=name)


def export_inputs(batch, T, batch_first, state_rows, lengths, input_size, hidden_size, states=("h0",),
                  dtype=torch.float32) -> dict:
    """Keyword inputs of an exported recurrent model: x, then (state_rows > 0) each of ``states``
    (state_rows, batch, hidden_size), then (``lengths``) lengths with no row at the full T."""
    inputs = {"x": torch.randn((batch, T, input_size) if batch_first else (T, batch, input_size), dtype=dtype)}
    for name in states if state_rows else ():
        inputs[name] = torch.randn(state_rows, batch, hidden_size, dtype=dtype)
    if lengths:
        n = torch.randint(1, T + 1, (batch,))
        n[0] = T - 1  # no row need run the full length
        inputs["lengths"] = n
    return inputs
