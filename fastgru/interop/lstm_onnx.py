"""ONNX LSTM node tensors <-> fastgru.LSTM: the LSTM's half of ``from_onnx`` / ``to_onnx``
(onnx_weights.py holds the public functions, which take this mapping for ``cell="lstm"`` and for
LSTM modules). The export form, which computes its node's weights itself, is
functional/onnx_forms.py's.

An ONNX ``LSTM`` node (opset 7 and later) takes, with D = num_directions (2 for
"bidirectional", else 1) and gate blocks in the order **i, o, f, c** (fastgru / nn.LSTM:
i, f, g, o; ONNX's c is PyTorch's g):

* ``W`` (D, 4H, input_size):  input weights, nn.LSTM's ``weight_ih`` layout per direction
* ``R`` (D, 4H, H):           recurrent weights, ``weight_hh`` layout
* ``B`` (D, 8H), optional:    ``[Wb (4H), Rb (4H)]``, i.e. ``bias_ih`` then ``bias_hh``; absent = zeros
* ``P`` (D, 3H), optional:    peephole weights (i, o, f), which nn.LSTM does not have

so per direction d, with ``from_onnx_order`` the block reordering (i, o, f, c) -> (i, f, g, o)::

    weight_ih = from_onnx_order(W[d])          weight_hh = from_onnx_order(R[d])
    bias_ih   = from_onnx_order(B[d, :4H])     bias_hh   = from_onnx_order(B[d, 4H:])

Inputs and outputs (layout=0, time-major): ``initial_h`` / ``initial_c`` (D, batch, H) are the
module's ``(h0, c0)``; ``Y_h`` / ``Y_c`` are ``(h_n, c_n)``; ``Y`` (seq, D, batch, H) is the
output (seq, batch, D * H) viewed as (seq, batch, D, H) and permuted to (seq, D, batch, H);
``sequence_lens`` is ``lengths=``. ``layout=1`` is ``batch_first=True`` with initial_h,
initial_c, Y_h and Y_c batch-first too, (batch, D, H).

Refused, having no nn.LSTM equivalent: peepholes (a ``P`` with any non-zero entry; an all-zero
``P`` is the same function as none and is accepted), ``input_forget=1`` (the forget gate coupled
to the input gate), and, as for the GRU, a lone ``direction="reverse"``. In the other direction a
module with ``proj_size > 0`` has no ONNX form (ONNX's LSTM has no projection). Not carried by
the tensors: ``activations`` other than (Sigmoid, Tanh, Tanh), their alpha / beta, ``clip``.
"""

from __future__ import annotations

import operator

import torch

from ..functional.gate_order import lstm_from_onnx, lstm_to_onnx
from .layer_weights import as_tensor, lstm_module_layer, onnx_node, onnx_node_tensors


def check_lstm_attributes(P, input_forget, D: int, H: int, caller: str) -> None:
    """Refuse an LSTM node's peepholes (non-zero ``P``) and ``input_forget=1``."""
    if input_forget is not None:
        try:
            value = operator.index(input_forget)
        except TypeError:
            value = None
        if value not in (0, 1):
            raise ValueError(f"{caller}: input_forget must be 0 or 1, got {input_forget!r}")
        if value == 1:
            raise ValueError(
                f"{caller}: input_forget=1 (the forget gate coupled to the input gate) has no fastgru / torch.nn.LSTM "
                "equivalent, whose input and forget gates are independent: only input_forget=0 (ONNX's default) "
                "converts"
            )
    if P is not None:
        P = as_tensor(P, "P", caller, "(num_directions, 3 * hidden_size)")
        if tuple(P.shape) != (D, 3 * H):
            raise ValueError(
                f"{caller}: P (the peephole weights) must have shape (num_directions, 3 * hidden_size) = "
                f"{(D, 3 * H)}, got {tuple(P.shape)}"
            )
        if bool((P != 0).any()):
            raise ValueError(
                f"{caller}: P holds non-zero peephole weights, and fastgru / torch.nn.LSTM have no peepholes (gates "
                "that read the cell state): such a node does not convert; an all-zero P (the same function as "
                "none) does"
            )


def lstm_directions_from_onnx(W, R, B, H: int):
    """Per direction, (w_ih, w_hh, b_ih, b_hh) in nn.LSTM's layout and gate order from validated
    ONNX tensors W (D, 4H, I), R (D, 4H, H), B (D, 8H) or None."""
    directions = []
    for d in range(W.shape[0]):
        b_ih = None if B is None else lstm_from_onnx(B[d, : 4 * H])
        b_hh = None if B is None else lstm_from_onnx(B[d, 4 * H :])
        directions.append((lstm_from_onnx(W[d]), lstm_from_onnx(R[d]), b_ih, b_hh))
    return directions


def refuse_projection(proj_size: int, caller: str) -> None:
    if proj_size:
        raise ValueError(
            f"{caller}: the LSTM has proj_size={proj_size}, and ONNX's LSTM has no projection (h = W_hr (o * "
            "tanh(c)) has no ONNX LSTM form): only proj_size=0 LSTMs convert"
        )


def onnx_lstm_tensors(directions):
    """An ONNX LSTM node's ``W`` (D, 4H, input), ``R`` (D, 4H, H) and ``B`` (D, 8H) or None, as
    torch tensors, from one layer's directions ((w_ih, w_hh, b_ih, b_hh, ...) in nn.LSTM's
    layout, forward first; biases None without bias): the gate blocks reordered to i, o, f, c.
    Plain differentiable ops on the parameters, so an exporter tracing them records them too."""
    return onnx_node_tensors(directions, lstm_to_onnx)


def lstm_onnx_node(module, layer, caller: str) -> dict:
    """``to_onnx`` of an LSTM module: its layer's node tensors and attributes."""
    directions, proj_size = lstm_module_layer(module, layer, caller)
    refuse_projection(proj_size, caller)
    with torch.no_grad():
        return onnx_node(*onnx_lstm_tensors(directions), "lstm")
