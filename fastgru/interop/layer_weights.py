"""What the Keras and ONNX weight converters share: reading a weight argument into a CPU tensor
with a clear error, collecting one layer's parameters from a module, building a one-layer GRU
from converted tensors, and turning a parameter into a numpy array."""

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


def check_dtype(dtype, caller: str) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{caller}: dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")


def check_bool(value, name: str, caller: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{caller}: {name} must be a bool, got {value!r}")


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
    with torch.no_grad():
        for d, tensors in enumerate(directions):
            sfx = "_l0" + ("_reverse" if d else "")
            for kind, t in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), tensors):
                if t is not None:
                    getattr(module, kind + sfx).copy_(t)
    return module


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
        raise TypeError(
            f"{caller}: module must be a fastgru.GRU, fastgru.GRUCell, torch.nn.GRU or torch.nn.GRUCell, "
            f"got {type(module).__name__}"
        )
    if layer is None:
        if module.num_layers != 1:
            raise ValueError(
                f"{caller}: the module has num_layers={module.num_layers}, and one converted layer holds one GRU "
                f"layer: pass layer=k (0 <= k < {module.num_layers}) to convert them one at a time, in order"
            )
        layer = 0
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < module.num_layers:
        raise ValueError(f"{caller}: layer must be an int in [0, {module.num_layers}), got {layer!r}")
    directions = []
    for sfx in ("", "_reverse") if module.bidirectional else ("",):
        w_ih, w_hh = getattr(module, f"weight_ih_l{layer}{sfx}"), getattr(module, f"weight_hh_l{layer}{sfx}")
        b_ih = getattr(module, f"bias_ih_l{layer}{sfx}") if module.bias else None
        b_hh = getattr(module, f"bias_hh_l{layer}{sfx}") if module.bias else None
        directions.append((w_ih, w_hh, b_ih, b_hh))
    return directions, reset_after


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A parameter as a fresh numpy array in its dtype (bfloat16, which numpy lacks, as float32)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy().copy()
