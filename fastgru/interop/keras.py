"""Keras GRU weights <-> fastgru.GRU.

A Keras GRU layer (``keras.layers.GRU``, ``keras.layers.GRUCell``; tf.keras alike) holds, with
H = units and gate blocks along the last axis in the order **z, r, h** (fastgru / nn.GRU: r, z, n):

* ``kernel``            (input_size, 3H): multiplies the input from the right, ``x @ kernel``
* ``recurrent_kernel``  (H, 3H):          ``h @ recurrent_kernel``
* ``bias``              (3H,) when ``reset_after=False``; (2, 3H) when ``reset_after=True``
                        (Keras' default): row 0 the input bias, row 1 the recurrent bias.
                        Absent when ``use_bias=False``.

``layer.get_weights()`` returns ``[kernel, recurrent_kernel, bias]`` (no bias without use_bias),
and ``layer.set_weights`` takes the same list. Keras' cell, with its default activations
(``activation="tanh"``, ``recurrent_activation="sigmoid"``)::

    z  = sigmoid(x K_z + b_z + h U_z [+ c_z])
    r  = sigmoid(x K_r + b_r + h U_r [+ c_r])
    hh = tanh(x K_h + b_h + r * (h U_h + c_h))      reset_after=True   (c: recurrent bias row)
    hh = tanh(x K_h + b_h + (r * h) U_h)            reset_after=False  (one bias, no c)
    h' = z * h + (1 - z) * hh

``reset_after=True`` is exactly nn.GRU's formula, and ``reset_after=False`` is fastgru's
``reset_after=False``, so the mapping is a transpose and a swap of the first two gate blocks::

    weight_ih = swap_rz(kernel.T)            weight_hh = swap_rz(recurrent_kernel.T)
    bias_ih   = swap_rz(bias[0])             bias_hh   = swap_rz(bias[1])      reset_after=True
    bias_ih   = swap_rz(bias)                bias_hh   = 0                     reset_after=False

Going back (``to_keras``) with ``reset_after=False``, Keras' single bias is
``bias_ih + bias_hh``: exact for that formulation, because there every part of ``bias_hh``
(including its candidate block, outside the reset gate) is simply added to ``bias_ih``.

Not carried by the weights, and so left to the caller: other activations (Keras 1's
``hard_sigmoid`` default included), ``go_backwards=True`` (run the module on the input reversed
along time), masking (right-padded masks: pass the lengths as ``lengths=``), ``stateful``,
dropout. Keras' inputs are batch-first, hence ``batch_first=True`` by default; Keras'
``return_sequences=False`` output is the module's ``h_n[-1]``.
"""

from __future__ import annotations

import torch

from .gate_order import swap_rz
from .layer_weights import as_tensor, build_gru, check_bool, module_layer, to_numpy

__all__ = ["from_keras", "to_keras", "from_keras_bidirectional", "to_keras_bidirectional"]


def _direction(kernel, recurrent_kernel, bias, reset_after: bool, caller: str, where: str = ""):
    """Validate one Keras layer's arrays -> (input_size, hidden_size, (w_ih, w_hh, b_ih, b_hh))
    in nn.GRU's layout and gate order. ``where`` prefixes argument names (bidirectional)."""
    kernel = as_tensor(kernel, f"{where}kernel", caller, "(input_size, 3 * hidden_size)")
    if kernel.dim() != 2:
        raise ValueError(
            f"{caller}: {where}kernel must be 2-D, (input_size, 3 * hidden_size) with gates z, r, h along "
            f"the last axis, got shape {tuple(kernel.shape)}"
        )
    input_size, three_h = kernel.shape
    if three_h == 0 or three_h % 3 or input_size == 0:
        raise ValueError(
            f"{caller}: {where}kernel must have shape (input_size, 3 * hidden_size) with both positive, "
            f"got {tuple(kernel.shape)}"
        )
    H = three_h // 3
    recurrent_kernel = as_tensor(
        recurrent_kernel, f"{where}recurrent_kernel", caller, "(hidden_size, 3 * hidden_size)"
    )
    if tuple(recurrent_kernel.shape) != (H, 3 * H):
        raise ValueError(
            f"{caller}: {where}recurrent_kernel must have shape (hidden_size, 3 * hidden_size) = {(H, 3 * H)} "
            f"to match kernel {tuple(kernel.shape)}, got {tuple(recurrent_kernel.shape)}"
        )
    w_ih, w_hh = swap_rz(kernel.T), swap_rz(recurrent_kernel.T)
    if bias is None:
        return input_size, H, (w_ih, w_hh, None, None)
    expected = (2, 3 * H) if reset_after else (3 * H,)
    bias = as_tensor(bias, f"{where}bias", caller, str(expected))
    shape = tuple(bias.shape)
    if shape != expected:
        if reset_after and shape == (3 * H,):
            hint = (
                f"; a Keras GRU with reset_after=True (Keras' default) has a (2, 3 * hidden_size) = {expected} bias "
                "(row 0 the input bias, row 1 the recurrent bias), and a (3 * hidden_size,) bias belongs to a layer "
                "built with reset_after=False: pass reset_after=False"
            )
        elif not reset_after and shape == (2, 3 * H):
            hint = (
                f"; a Keras GRU with reset_after=False has a single (3 * hidden_size,) = {expected} bias, and a "
                "(2, 3 * hidden_size) bias belongs to a layer built with reset_after=True: pass reset_after=True"
            )
        else:
            hint = f" for reset_after={reset_after}"
        raise ValueError(f"{caller}: {where}bias must have shape {expected}, got {shape}{hint}")
    if reset_after:
        b_ih, b_hh = swap_rz(bias[0]), swap_rz(bias[1])
    else:
        b_ih, b_hh = swap_rz(bias), torch.zeros(3 * H, dtype=bias.dtype)
    return input_size, H, (w_ih, w_hh, b_ih, b_hh)


def from_keras(
    kernel,
    recurrent_kernel,
    bias=None,
    *,
    reset_after: bool = True,
    batch_first: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
):
    """A one-layer, one-direction ``fastgru.GRU`` holding a Keras GRU layer's weights.

    ``kernel`` (input_size, 3H), ``recurrent_kernel`` (H, 3H) and ``bias`` are the arrays of
    ``layer.get_weights()`` (numpy arrays, torch tensors or anything numpy can read), gates in
    Keras' order z, r, h: ``from_keras(*layer.get_weights(), reset_after=layer.reset_after)``.
    ``bias``: (2, 3H) for ``reset_after=True`` (row 0 -> bias_ih, row 1 -> bias_hh), (3H,) for
    ``reset_after=False`` (-> bias_ih, with bias_hh = 0: that Keras GRU has one bias), None for a
    ``use_bias=False`` layer (-> a ``bias=False`` module).

    The module gets ``reset_after`` (Keras' True is nn.GRU's formula; with it the module's
    state_dict also loads into torch.nn.GRU), ``batch_first`` (True by default: Keras' inputs are
    (batch, time, features)), ``dtype`` and ``device``. Wrong shapes, dimensions or types raise
    ValueError / TypeError naming the argument.
    """
    check_bool(reset_after, "reset_after", "from_keras")
    input_size, H, tensors = _direction(kernel, recurrent_kernel, bias, reset_after, "from_keras")
    return build_gru(
        "from_keras", [tensors], input_size=input_size, hidden_size=H, reset_after=reset_after,
        batch_first=batch_first, dtype=dtype, device=device,
    )


def _keras_arrays(directions, reset_after):
    out = []
    for w_ih, w_hh, b_ih, b_hh in directions:
        out += [to_numpy(swap_rz(w_ih.detach()).T), to_numpy(swap_rz(w_hh.detach()).T)]
        if b_ih is not None:
            if reset_after:
                out.append(to_numpy(torch.stack([swap_rz(b_ih.detach()), swap_rz(b_hh.detach())])))
            else:
                out.append(to_numpy(swap_rz(b_ih.detach() + b_hh.detach())))
    return out


def to_keras(module, *, layer: int | None = None) -> list:
    """A GRU layer's weights as the list Keras' ``layer.set_weights`` takes:
    ``[kernel (input_size, 3H), recurrent_kernel (H, 3H), bias]``, numpy arrays in the module's
    dtype (bfloat16 as float32), gates z, r, h. No bias entry for a ``bias=False`` module
    (a Keras GRU with ``use_bias=False``).

    The Keras layer to load them into is ``keras.layers.GRU(H, reset_after=module.reset_after,
    use_bias=module.bias)`` (fed batch-first input). ``bias`` is (2, 3H) for ``reset_after=True``
    and (3H,) = bias_ih + bias_hh for ``reset_after=False`` (exact there: bias_hh lies wholly
    outside the reset gate).

    ``module``: fastgru.GRU / GRUCell or torch.nn.GRU / GRUCell. A Keras GRU layer is one layer in
    one direction: a module with num_layers > 1 needs ``layer=k`` (one Keras layer per GRU layer,
    stacked in order), and a bidirectional one goes through ``to_keras_bidirectional``; both
    otherwise raise ValueError.
    """
    directions, reset_after = module_layer(module, layer, "to_keras")
    if len(directions) != 1:
        raise ValueError(
            "to_keras: the module has bidirectional=True, and a Keras GRU layer has one direction: "
            "use to_keras_bidirectional(module) for a keras.layers.Bidirectional(GRU(...)) layer"
        )
    return _keras_arrays(directions, reset_after)


def _split_weights(weights, name: str):
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple)):
        raise TypeError(
            f"from_keras_bidirectional: {name} must be a list [kernel, recurrent_kernel] or "
            f"[kernel, recurrent_kernel, bias] (one GRU layer's get_weights()), got {type(weights).__name__}"
        )
    if len(weights) not in (2, 3):
        raise ValueError(
            f"from_keras_bidirectional: {name} must hold 2 arrays (use_bias=False) or 3 "
            f"(kernel, recurrent_kernel, bias), got {len(weights)}"
        )
    return list(weights) + [None] * (3 - len(weights))


def from_keras_bidirectional(
    forward_weights,
    backward_weights,
    *,
    reset_after: bool = True,
    batch_first: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
):
    """A one-layer ``fastgru.GRU(bidirectional=True)`` from a ``keras.layers.Bidirectional(GRU)``
    layer: ``forward_weights`` and ``backward_weights`` are the two wrapped layers'
    ``get_weights()`` lists (``w = bi.get_weights(); n = len(w) // 2`` -> ``w[:n], w[n:]``), each
    mapped as in ``from_keras``; the backward layer becomes the ``_reverse`` parameters.

    The module's output is Keras' with ``merge_mode="concat"`` (forward features first, the
    backward sequence put back in time order, as Keras' Bidirectional does); its ``h_n`` holds the
    forward then the backward final state. Other merge modes are sums / products of the two
    halves of the output.
    """
    check_bool(reset_after, "reset_after", "from_keras_bidirectional")
    fwd = _direction(*_split_weights(forward_weights, "forward_weights"), reset_after,
                     "from_keras_bidirectional", "forward_weights ")
    bwd = _direction(*_split_weights(backward_weights, "backward_weights"), reset_after,
                     "from_keras_bidirectional", "backward_weights ")
    if fwd[:2] != bwd[:2] or (fwd[2][2] is None) != (bwd[2][2] is None):
        raise ValueError(
            "from_keras_bidirectional: forward_weights and backward_weights must describe layers of the same "
            f"input_size, hidden_size and use_bias; got (input_size, hidden_size) {fwd[:2]} and {bwd[:2]}, "
            f"bias {'present' if fwd[2][2] is not None else 'absent'} and "
            f"{'present' if bwd[2][2] is not None else 'absent'}"
        )
    return build_gru(
        "from_keras_bidirectional", [fwd[2], bwd[2]], input_size=fwd[0], hidden_size=fwd[1],
        reset_after=reset_after, batch_first=batch_first, dtype=dtype, device=device,
    )


def to_keras_bidirectional(module, *, layer: int | None = None) -> list:
    """A bidirectional module's weights as the flat list ``keras.layers.Bidirectional(GRU(...))``'s
    ``set_weights`` takes: the forward layer's ``[kernel, recurrent_kernel, bias]`` then the
    backward layer's (``_reverse`` parameters), each as in ``to_keras``. ``layer`` as in
    ``to_keras``; a module that is not bidirectional raises ValueError (use ``to_keras``)."""
    directions, reset_after = module_layer(module, layer, "to_keras_bidirectional")
    if len(directions) != 2:
        raise ValueError(
            "to_keras_bidirectional: the module has bidirectional=False (or is a cell): use to_keras(module)"
        )
    return _keras_arrays(directions, reset_after)
