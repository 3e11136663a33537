"""ONNX GRU and LSTM node tensors <-> fastgru.GRU and fastgru.LSTM.

The public functions take both recurrences: ``from_onnx(..., cell="lstm")`` reads an ONNX LSTM
node's tensors, and ``to_onnx`` writes an LSTM node's for an LSTM module. This docstring states
the GRU's mapping; lstm_onnx.py states the LSTM's (gates i, o, f, c).

An ONNX ``GRU`` node (opset 7 and later) takes, with D = num_directions (1 for "forward" and
"reverse", 2 for "bidirectional") and gate blocks in the order **z, r, h** (fastgru / nn.GRU:
r, z, n):

* ``W`` (D, 3H, input_size):  input weights, nn.GRU's ``weight_ih`` layout per direction
* ``R`` (D, 3H, H):           recurrent weights, ``weight_hh`` layout
* ``B`` (D, 6H), optional:    ``[Wb (3H), Rb (3H)]``, i.e. ``bias_ih`` then ``bias_hh``; absent = zeros

so per direction d (0 forward, 1 the reverse direction of a bidirectional node)::

    weight_ih = swap_rz(W[d])    weight_hh = swap_rz(R[d])
    bias_ih   = swap_rz(B[d, :3H])   bias_hh = swap_rz(B[d, 3H:])

The attribute ``linear_before_reset=1`` is nn.GRU's formula (``reset_after=True``);
``linear_before_reset=0``, ONNX's default, is ``reset_after=False``. (PyTorch's ONNX export of
nn.GRU writes linear_before_reset=1.)

Inputs and outputs, for ``layout=0`` (ONNX's default, time-major, ``batch_first=False``):
``initial_h`` (D, batch, H) is the module's ``hx`` as it is; ``Y_h`` is ``h_n``; ONNX's ``Y``
(seq, D, batch, H) is the module's output (seq, batch, D * H) viewed as (seq, batch, D, H) and
permuted to (seq, D, batch, H). ``sequence_lens`` is the module's ``lengths=``. With ``layout=1``
(batch-first X and Y), build the module with ``batch_first=True`` and transpose initial_h and
Y_h, which ONNX then also stores batch-first, (batch, D, H).

Not carried by the tensors: ``activations`` other than the default (Sigmoid, Tanh),
``activation_alpha`` / ``activation_beta``, and ``clip``; such nodes have no fastgru
equivalent. A single ``direction="reverse"`` has no nn.GRU equivalent either (see from_onnx).
"""

from __future__ import annotations

import operator

import torch

from ..functional.gate_order import swap_rz
from .layer_weights import (as_tensor, build_gru, build_lstm, family_of, is_lstm, module_layer, onnx_node,
                            onnx_node_tensors)
from .lstm_onnx import check_lstm_attributes, lstm_directions_from_onnx, lstm_onnx_node

__all__ = ["from_onnx", "to_onnx", "onnx_layer_tensors"]

_DIRECTIONS = ("forward", "reverse", "bidirectional")


def from_onnx(
    W,
    R,
    B=None,
    *,
    cell: str = "gru",
    linear_before_reset: int | None = None,
    P=None,
    input_forget: int | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    batch_first: bool = False,
    dtype: torch.dtype = torch.float32,
    device=None,
):
    """A one-layer ``fastgru.GRU`` holding an ONNX GRU node's ``W``, ``R`` and ``B`` (with
    ``cell="lstm"``, a ``fastgru.LSTM`` holding an ONNX LSTM node's).

    ``W`` (D, 3H, input_size), ``R`` (D, 3H, H), ``B`` (D, 6H) or None: numpy arrays or torch
    tensors in ONNX's layout and gate order (z, r, h), D = 2 for ``direction="bidirectional"``,
    else 1. ``B=None`` (the node has no B input, which ONNX reads as zeros) gives a ``bias=False``
    module, the same function; pass ``B=np.zeros((D, 6 * H))`` for trainable zero biases.
    ``linear_before_reset`` (None or 0, ONNX's default, or 1) becomes the module's ``reset_after``
    (1 -> True, nn.GRU's formula). ``hidden_size``, the node's attribute, is optional and checked
    against ``R``. ``batch_first`` corresponds to the node's ``layout`` (see the module docstring
    for initial_h / Y / Y_h). ``from_onnx(**to_onnx(module))`` rebuilds a module.

    ``cell="lstm"``: an ONNX LSTM node's ``W`` (D, 4H, input_size), ``R`` (D, 4H, H) and ``B``
    (D, 8H) or None, gates i, o, f, c (reordered to nn.LSTM's i, f, g, o; see lstm_onnx.py).
    ``P`` (the peepholes, (D, 3H)) and ``input_forget`` are the node's too: a non-zero ``P`` and
    ``input_forget=1`` have no nn.LSTM equivalent and raise ValueError (an all-zero ``P`` is
    accepted). ``linear_before_reset`` is the GRU's and is refused there, as ``P`` and
    ``input_forget`` are for ``cell="gru"``.

    ``direction="reverse"`` (one direction reading the sequence from its end) raises ValueError:
    torch.nn.GRU / LSTM, and so fastgru, have a reverse direction only inside
    ``bidirectional=True``. Build the forward module from the same tensors and reverse time around
    it::

        m = from_onnx(W, R, B, direction="forward", linear_before_reset=lbr)
        y, h_n = m(x.flip(0), h0)      # ONNX's Y = y.flip(0), Y_h = h_n

    (time is dim 1 with ``batch_first=True``; with sequence_lens, reverse each sequence within its
    own length instead of flipping the padded tensor).

    Wrong shapes, dimensions, types or attribute values raise ValueError / TypeError naming the
    argument.
    """
    family = family_of(cell, "from_onnx")
    G = 4 if family == "lstm" else 3
    if not isinstance(direction, str) or direction not in _DIRECTIONS:
        raise ValueError(f"from_onnx: direction must be one of {_DIRECTIONS}, got {direction!r}")
    if direction == "reverse":
        raise ValueError(
            "from_onnx: direction='reverse' (a single direction that reads the sequence from its end) has no "
            "fastgru / torch.nn.GRU / torch.nn.LSTM equivalent: their reverse direction exists only inside "
            "bidirectional=True. Build the forward module from the same tensors, from_onnx(W, R, B, "
            "direction='forward', ...), and run it on the input reversed along time, reversing its output back: "
            "y, h_n = m(x.flip(0)); Y = y.flip(0) (time is dim 1 with batch_first=True; with sequence_lens, "
            "reverse each sequence within its own length)"
        )
    if family == "lstm":
        if linear_before_reset is not None:
            raise ValueError(
                f"from_onnx: linear_before_reset={linear_before_reset!r} is a GRU attribute, and cell='lstm' has "
                "none: leave it out"
            )
    else:
        for name, value in (("P", P), ("input_forget", input_forget)):
            if value is not None:
                raise ValueError(
                    f"from_onnx: {name} belongs to an ONNX LSTM node, and cell='gru' reads a GRU node's tensors: "
                    "pass cell='lstm' for an LSTM"
                )
        try:
            lbr = operator.index(0 if linear_before_reset is None else linear_before_reset)
        except TypeError:
            lbr = None
        if lbr not in (0, 1):
            raise ValueError(f"from_onnx: linear_before_reset must be 0 or 1, got {linear_before_reset!r}")
    D = 2 if direction == "bidirectional" else 1
    gates = "i, o, f, c" if family == "lstm" else "z, r, h"

    W = as_tensor(W, "W", "from_onnx", f"(num_directions, {G} * hidden_size, input_size)")
    R = as_tensor(R, "R", "from_onnx", f"(num_directions, {G} * hidden_size, hidden_size)")
    if R.dim() != 3 or R.shape[2] == 0 or R.shape[1] != G * R.shape[2]:
        raise ValueError(
            f"from_onnx: R must be 3-D, (num_directions, {G} * hidden_size, hidden_size) with gates {gates} along "
            f"dim 1, got shape {tuple(R.shape)}{_family_hint(R, family)}"
        )
    H = R.shape[2]
    if hidden_size is not None and (isinstance(hidden_size, bool) or hidden_size != H):
        raise ValueError(f"from_onnx: hidden_size={hidden_size!r} does not match R of shape {tuple(R.shape)} (H={H})")
    if W.dim() != 3 or W.shape[1] != G * H or W.shape[2] == 0:
        raise ValueError(
            f"from_onnx: W must be 3-D, (num_directions, {G} * hidden_size, input_size) = ({D}, {G * H}, "
            f"input_size) with input_size > 0, got shape {tuple(W.shape)}"
        )
    for name, t in (("W", W), ("R", R)):
        if t.shape[0] != D:
            raise ValueError(
                f"from_onnx: {name} has num_directions={t.shape[0]} (shape {tuple(t.shape)}), but direction="
                f"{direction!r} needs {D}" + ("; pass direction='bidirectional'" if t.shape[0] == 2 else "")
            )
    if B is not None:
        B = as_tensor(B, "B", "from_onnx", f"(num_directions, {2 * G} * hidden_size)")
        if tuple(B.shape) != (D, 2 * G * H):
            raise ValueError(
                f"from_onnx: B must have shape (num_directions, {2 * G} * hidden_size) = {(D, 2 * G * H)}, [Wb, Rb] "
                f"per direction, got {tuple(B.shape)}"
            )
    if family == "lstm":
        check_lstm_attributes(P, input_forget, D, H, "from_onnx")
        return build_lstm(
            "from_onnx", lstm_directions_from_onnx(W, R, B, H), input_size=W.shape[2], hidden_size=H,
            batch_first=batch_first, dtype=dtype, device=device,
        )
    directions = []
    for d in range(D):
        b_ih = None if B is None else swap_rz(B[d, : 3 * H])
        b_hh = None if B is None else swap_rz(B[d, 3 * H :])
        directions.append((swap_rz(W[d]), swap_rz(R[d]), b_ih, b_hh))
    return build_gru(
        "from_onnx", directions, input_size=W.shape[2], hidden_size=H, reset_after=bool(lbr),
        batch_first=batch_first, dtype=dtype, device=device,
    )


def _family_hint(R, family: str) -> str:
    """For an R of the other family's shape, which ``cell`` to pass."""
    if R.dim() == 3 and R.shape[2]:
        other, G = ("lstm", 4) if family == "gru" else ("gru", 3)
        if R.shape[1] == G * R.shape[2]:
            return f"; this R is an ONNX {other.upper()} node's ({G} * hidden_size rows): pass cell='{other}'"
    return ""


def to_onnx(module, *, layer: int | None = None) -> dict:
    """One GRU layer as an ONNX GRU node's tensors and attributes:
    ``dict(W=(D, 3H, input_size), R=(D, 3H, H), B=(D, 6H) or None, linear_before_reset=0 | 1,
    direction="forward" | "bidirectional", hidden_size=H, cell="gru")``, numpy arrays in the
    module's dtype (bfloat16 as float32), gates z, r, h. ``B`` is None for a ``bias=False``
    module: leave the node's B input out. ``linear_before_reset`` is ``int(module.reset_after)``.
    ``cell`` says which node it is (and lets ``from_onnx(**to_onnx(module))`` rebuild the module).

    An LSTM module (fastgru.LSTM / LSTMCell, torch.nn.LSTM / LSTMCell) gives an ONNX LSTM node's
    ``dict(W=(D, 4H, input_size), R=(D, 4H, H), B=(D, 8H) or None, direction, hidden_size,
    cell="lstm")``, gates i, o, f, c (no P: no peepholes; input_forget is ONNX's default 0).
    ``proj_size > 0`` has no ONNX form (ValueError).

    ``module``: fastgru.GRU / GRUCell or torch.nn.GRU / GRUCell (or the LSTMs). One ONNX node is
    one layer: a module with num_layers > 1 needs ``layer=k``, giving layer k's node (ValueError
    otherwise); a stack is a chain of nodes, each fed the previous one's Y transposed to
    (seq, batch, D, H) and reshaped to (seq, batch, D * H).
    """
    if is_lstm(module):
        return lstm_onnx_node(module, layer, "to_onnx")
    directions, reset_after = module_layer(module, layer, "to_onnx")
    with torch.no_grad():
        return onnx_node(*onnx_layer_tensors(directions), "gru", linear_before_reset=int(reset_after))


def onnx_layer_tensors(directions):
    """An ONNX GRU node's ``W`` (D, 3H, input), ``R`` (D, 3H, H) and ``B`` (D, 6H) or None, as
    torch tensors, from one layer's directions ((w_ih, w_hh, b_ih, b_hh) in nn.GRU's layout,
    forward first; biases None without bias): the gate blocks swapped to z, r, h. Plain
    differentiable ops on the parameters, so an exporter tracing them records them too."""
    return onnx_node_tensors(directions, swap_rz)
