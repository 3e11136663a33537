"""torch.onnx.export of fastgru.GRU and GRUAttention, run in onnxruntime.

Each GRU layer must become one standard ONNX GRU node (linear_before_reset=1 for nn.GRU's
formulation, 0 for reset_after=False), batch and time axes stay dynamic, and onnxruntime's
results meet the float32 numerics contract of fastgru.testing: relative error against a float64
run of the module, no worse than BASELINE_FACTOR times PyTorch's own float32 error (floored at
a few ulps). Measured: in these cases (three seeds) onnxruntime's relative error stayed under
1.5e-7, at most 0.15 of that bound; in a wider sweep (up to 3 layers, H=48, T=40) its max-norm
error was at most 1.7x PyTorch's.

torch.onnx.export takes a few seconds per model on a CPU; the file runs in about 35 s.
"""

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) builds the graph with it

import fastgru  # noqa: E402
from fastgru.functional.onnx_forms import gru_onnx_forward  # noqa: E402
from helpers import (  # noqa: E402
    compare_with_ort,
    export_inputs,
    exported_nodes,
    onnx_attributes,
    onnx_export,
    ort_session,
)

I, H = 6, 8


class _Call(torch.nn.Module):
    """module(x, h0, lengths=lengths) with h0 / lengths taken only when given (graph inputs)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, h0=None, lengths=None):
        return self.module(x, h0, lengths=lengths)


def _attr(node, name):
    return onnx_attributes(node)[name]


def _inputs(B, T, batch_first, h0_rows, lengths, dtype=torch.float32):
    return export_inputs(B, T, batch_first, h0_rows, lengths, I, H, dtype=dtype)


# (num_layers, bidirectional, batch_first, bias, explicit h0, lengths, reset_after)
GRU_CASES = [
    (1, False, False, True, False, False, True),
    (2, True, True, True, True, True, True),
    (2, False, False, False, True, False, True),
    (1, True, True, False, False, True, True),
    (2, True, False, True, True, True, False),
    (1, False, True, False, False, True, False),
]


@pytest.mark.parametrize("layers,bidirectional,batch_first,bias,h0,lengths,reset_after", GRU_CASES)
def test_gru_export(layers, bidirectional, batch_first, bias, h0, lengths, reset_after):
    D = 2 if bidirectional else 1
    gru = fastgru.GRU(I, H, num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                      reset_after=reset_after).eval()
    model = _Call(gru)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    x_axes = {0: batch, 1: time} if batch_first else {0: time, 1: batch}
    inputs = _inputs(3, 7, batch_first, layers * D if h0 else 0, lengths)
    dynamic = {"x": x_axes, "h0": {1: batch} if h0 else None, "lengths": {0: batch} if lengths else None}
    dynamic = {k: v for k, v in dynamic.items() if k in inputs}
    proto = onnx_export(model, inputs, dynamic)

    nodes = exported_nodes(proto, "GRU")
    assert len(nodes) == layers
    for node in nodes:
        assert _attr(node, "linear_before_reset") == (1 if reset_after else 0)
        assert _attr(node, "hidden_size") == H
        assert _attr(node, "direction") == (b"bidirectional" if bidirectional else b"forward")
        assert (node.input[3] != "") == bias  # B
        assert (len(node.input) > 4 and node.input[4] != "") == lengths  # sequence_lens

    session = ort_session(proto)
    compare_with_ort(session, model, inputs, ["output", "h_n"])
    # The batch and time axes are dynamic: another shape runs in the same graph.
    more = _inputs(5, 11, batch_first, layers * D if h0 else 0, lengths)
    compare_with_ort(session, model, more, ["output", "h_n"])


def test_gru_attention_export_with_lengths():
    model = fastgru.GRUAttention(I, H, 3, num_layers=2, bidirectional=True).eval()
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    inputs = {"x": torch.randn(4, 9, I), "lengths": torch.tensor([9, 3, 6, 1])}
    proto = onnx_export(model, inputs, {"x": {0: batch, 1: time}, "lengths": {0: batch}})
    nodes = exported_nodes(proto, "GRU")
    assert len(nodes) == 2 and all(_attr(n, "linear_before_reset") == 1 for n in nodes)
    session = ort_session(proto)
    compare_with_ort(session, model, inputs, ["logits", "weights"])
    more = {"x": torch.randn(2, 13, I), "lengths": torch.tensor([5, 13])}
    compare_with_ort(session, model, more, ["logits", "weights"])


def test_torchscript_exporter():
    """dynamo=False (the deprecated TorchScript exporter) writes the same GRU node."""
    gru = fastgru.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True, reset_after=False).eval()
    model = _Call(gru)
    inputs = _inputs(3, 7, True, 0, True)
    proto = onnx_export(model, inputs, {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}, dynamo=False)
    nodes = exported_nodes(proto, "GRU")
    assert len(nodes) == 2 and all(_attr(n, "linear_before_reset") == 0 for n in nodes)
    session = ort_session(proto)
    compare_with_ort(session, model, inputs, ["output", "h_n"])
    compare_with_ort(session, model, _inputs(2, 10, True, 0, True), ["output", "h_n"])


def test_what_onnx_cannot_express_is_refused():
    """Dropout between layers (training mode) and bfloat16 have no ONNX GRU form: clear errors."""
    gru = fastgru.GRU(I, H, num_layers=2, dropout=0.5).train()
    x, hx = torch.randn(5, 2, I), torch.zeros(2, 2, H)
    with pytest.raises(RuntimeError, match="model.eval"):
        gru_onnx_forward(gru, x, hx, None)
    bf16 = fastgru.GRU(I, H, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="ONNX's GRU takes"):
        gru_onnx_forward(bf16, x[..., :I].to(torch.bfloat16), hx[:1].to(torch.bfloat16), None)
