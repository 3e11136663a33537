"""What the Keras and ONNX weight converters share: reading a weight argument into a CPU tensor
with a clear error, checking a Keras layer's two kernels (either recurrence), telling a GRU
module from an LSTM one, collecting one layer's parameters from a module, building a one-layer
GRU or LSTM from converted tensors, turning a parameter into a numpy array, and an ONNX node's
tensors and ``to_onnx`` dict from a layer's parameters."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def as_tensor(value, name: str, caller: str, layout: str) -> torch.Tensor:
    """``value`` (numpy array, torch tensor or anything with ``__array__``, e.g. a TensorFlow or
    JAX array) as a CPU torch tensor in its own dtype. ``layout`` describes the expected shape
    for the error messages."""
    if isinstance(value, (list, tuple)):
        raise TypeError(
            f"{caller}: {name} must be an array of shape {layout}, got a {type(value).__name__}"
            + (" (a list of arrays such as layer.get_weights() is unpacked with *)" if caller == "from_keras" else "")
        )
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    elif isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        a = np.asarray(value)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{caller}: {name} must hold real numbers, got dtype {a.dtype}")
        t = torch.from_numpy(np.array(a, copy=True))
    else:
        raise TypeError(
            f"{caller}: {name} must be a numpy array or torch tensor of shape {layout}, got {type(value).__name__}"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{caller}: {name} must hold real numbers, got dtype {t.dtype}")
    return t


def keras_kernels(kernel, recurrent_kernel, gates: str, caller: str, where: str, hint, for_cell: str = ""):
    """A Keras layer's ``kernel`` (input_size, n * H) and ``recurrent_kernel`` (H, n * H), n the
    number of gate blocks named in ``gates`` ("z, r, h" or "i, f, c, o"), read and checked ->
    (kernel, recurrent_kernel, input_size, H). ``where`` prefixes argument names
    (bidirectional); ``hint(kernel, recurrent_kernel)`` ends a shape error (the other
    recurrence's arrays named), ``for_cell`` qualifies it (" for cell='lstm'")."""
    n = len(gates.split(", "))
    kernel = as_tensor(kernel, f"{where}kernel", caller, f"(input_size, {n} * hidden_size)")
    if kernel.dim() != 2:
        raise ValueError(
            f"{caller}: {where}kernel must be 2-D, (input_size, {n} * hidden_size) with gates {gates} along "
            f"the last axis, got shape {tuple(kernel.shape)}"
        )
    recurrent_kernel = as_tensor(
        recurrent_kernel, f"{where}recurrent_kernel", caller, f"(hidden_size, {n} * hidden_size)"
    )
    input_size, columns = kernel.shape
    if columns == 0 or columns % n or input_size == 0:
        raise ValueError(
            f"{caller}: {where}kernel must have shape (input_size, {n} * hidden_size) with both positive"
            f"{for_cell}, got {tuple(kernel.shape)}{hint(kernel, recurrent_kernel)}"
        )
    H = columns // n
    if tuple(recurrent_kernel.shape) != (H, n * H):
        raise ValueError(
            f"{caller}: {where}recurrent_kernel must have shape (hidden_size, {n} * hidden_size) = {(H, n * H)} "
            f"to match kernel {tuple(kernel.shape)}{for_cell}, got {tuple(recurrent_kernel.shape)}"
            f"{hint(kernel, recurrent_kernel)}"
        )
    return kernel, recurrent_kernel, input_size, H


def check_dtype(dtype, caller: str) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{caller}: dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")


def check_bool(value, name: str, caller: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{caller}: {name} must be a bool, got {value!r}")


def lstm_classes():
    """(layer classes, cell classes) of the LSTM modules the converters take: fastgru's and
    torch.nn's."""
    from ..nn.lstm import LSTM, LSTMCell

    return (LSTM, nn.LSTM), (LSTMCell, nn.LSTMCell)


def is_lstm(module) -> bool:
    """Whether ``module`` is an LSTM layer or cell (fastgru's or torch.nn's): the converters'
    ``to_*`` functions take the LSTM's mapping for it, the GRU's otherwise."""
    layers, cells = lstm_classes()
    return isinstance(module, layers + cells)


def family_of(cell, caller: str) -> str:
    """The ``cell`` argument of a ``from_*`` converter, "gru" or "lstm" (any case)."""
    family = cell.lower() if isinstance(cell, str) else None
    if family not in ("gru", "lstm"):
        raise ValueError(f"{caller}: cell must be 'gru' or 'lstm' (the layer the weights come from), got {cell!r}")
    return family


def build_gru(caller, directions, *, input_size, hidden_size, reset_after, batch_first, dtype, device):
    """A one-layer fastgru.GRU holding ``directions``: a list (forward first, then reverse) of
    (w_ih, w_hh, b_ih, b_hh) in nn.GRU's layout and (r, z, n) gate order (biases None: bias=False)."""
    from ..nn import GRU

    check_dtype(dtype, caller)
    check_bool(batch_first, "batch_first", caller)
    bias = directions[0][2] is not None
    module = GRU(
        input_size, hidden_size, 1, bias, batch_first, 0.0, len(directions) == 2,
        device=device, dtype=dtype, reset_after=reset_after,
    )
    _load(module, directions)
    return module


def build_lstm(caller, directions, *, input_size, hidden_size, batch_first, dtype, device):
    """A one-layer fastgru.LSTM (no projection) holding ``directions``: a list (forward first,
    then reverse) of (w_ih, w_hh, b_ih, b_hh) in nn.LSTM's layout and (i, f, g, o) gate order
    (biases None: bias=False)."""
    LSTM = lstm_classes()[0][0]

    check_dtype(dtype, caller)
    check_bool(batch_first, "batch_first", caller)
    module = LSTM(
        input_size, hidden_size, num_layers=1, bias=directions[0][2] is not None, batch_first=batch_first,
        bidirectional=len(directions) == 2, device=device, dtype=dtype,
    )
    _load(module, directions)
    return module


def _load(module, directions):
    with torch.no_grad():
        for d, tensors in enumerate(directions):
            sfx = "_l0" + ("_reverse" if d else "")
            for kind, t in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), tensors):
                if t is not None:
                    getattr(module, kind + sfx).copy_(t)


def _layer_index(module, layer, caller: str) -> int:
    if layer is None:
        if module.num_layers != 1:
            raise ValueError(
                f"{caller}: the module has num_layers={module.num_layers}, and one converted layer holds one "
                f"recurrent layer: pass layer=k (0 <= k < {module.num_layers}) to convert them one at a time, in order"
            )
        return 0
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < module.num_layers:
        raise ValueError(f"{caller}: layer must be an int in [0, {module.num_layers}), got {layer!r}")
    return layer


def _directions(module, layer, projection: bool):
    """Per direction (forward first), ``layer``'s (w_ih, w_hh, b_ih, b_hh), plus w_hr with
    ``projection``; None for the biases of a ``bias=False`` module and for an absent w_hr."""
    out = []
    for sfx in ("", "_reverse") if module.bidirectional else ("",):
        def param(name, present=True):
            return getattr(module, f"{name}_l{layer}{sfx}") if present else None

        tensors = (param("weight_ih"), param("weight_hh"), param("bias_ih", module.bias), param("bias_hh", module.bias))
        if projection:
            tensors += (param("weight_hr", module.proj_size > 0),)
        out.append(tensors)
    return out


def _not_recurrent(module, caller: str):
    return TypeError(
        f"{caller}: module must be a fastgru.GRU, GRUCell, LSTM or LSTMCell, or one of torch.nn's GRU, GRUCell, "
        f"LSTM or LSTMCell, got {type(module).__name__}"
    )


def module_layer(module, layer, caller: str):
    """(directions, reset_after): the parameters of one layer of a GRU-like module, a list of
    (w_ih, w_hh, b_ih, b_hh) tensors, forward direction first (biases None without bias).

    Accepts fastgru.GRU / fastgru.GRUCell and torch.nn.GRU / nn.GRUCell (always reset_after=True).
    A module with several layers needs ``layer``."""
    from ..nn import GRU, GRUCell

    reset_after = getattr(module, "reset_after", True)
    if isinstance(module, (GRUCell, nn.GRUCell)):
        if layer not in (None, 0):
            raise ValueError(f"{caller}: a GRUCell has a single layer, got layer={layer!r}")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [tuple(getattr(module, n) for n in names)], reset_after
    if not isinstance(module, (GRU, nn.GRU)):
        raise _not_recurrent(module, caller)
    layer = _layer_index(module, layer, caller)
    return _directions(module, layer, False), reset_after


def lstm_module_layer(module, layer, caller: str):
    """(directions, proj_size): the parameters of one layer of an LSTM module, a list of
    (w_ih, w_hh, b_ih, b_hh, w_hr) tensors, forward direction first (biases None without bias,
    w_hr None without a projection).

    Accepts fastgru.LSTM / fastgru.LSTMCell and torch.nn.LSTM / nn.LSTMCell. A module with
    several layers needs ``layer``."""
    layers, cells = lstm_classes()
    if isinstance(module, cells):
        if layer not in (None, 0):
            raise ValueError(f"{caller}: an LSTMCell has a single layer, got layer={layer!r}")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [tuple(getattr(module, n, None) for n in names) + (None,)], 0
    if not isinstance(module, layers):
        raise _not_recurrent(module, caller)
    layer = _layer_index(module, layer, caller)
    return _directions(module, layer, True), module.proj_size


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A parameter as a fresh numpy array in its dtype (bfloat16, which numpy lacks, as float32)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy().copy()


def onnx_node_tensors(directions, to_onnx_order):
    """An ONNX GRU or LSTM node's ``W`` (D, nH, input), ``R`` (D, nH, H) and ``B`` (D, 2nH) or
    None, as torch tensors, from one layer's directions ((w_ih, w_hh, b_ih, b_hh, ...) in nn's
    layout, forward first; biases None without bias), each tensor's gate blocks put in ONNX's
    order by ``to_onnx_order``. Plain differentiable ops on the parameters, so an exporter
    tracing them records them too."""
    W = torch.stack([to_onnx_order(d[0]) for d in directions])
    R = torch.stack([to_onnx_order(d[1]) for d in directions])
    if directions[0][2] is None:
        return W, R, None
    B = torch.stack([torch.cat([to_onnx_order(d[2]), to_onnx_order(d[3])]) for d in directions])
    return W, R, B


def onnx_node(W, R, B, cell: str, **attributes) -> dict:
    """``to_onnx``'s dict of one node: its tensors (torch, B None without bias) as numpy arrays,
    ``attributes`` (the GRU's linear_before_reset), then direction, hidden_size and cell."""
    return {
        "W": to_numpy(W),
        "R": to_numpy(R),
        "B": None if B is None else to_numpy(B),
        **attributes,
        "direction": "bidirectional" if W.shape[0] == 2 else "forward",
        "hidden_size": int(R.shape[-1]),
        "cell": cell,
    }
