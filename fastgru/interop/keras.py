"""Keras GRU and LSTM weights <-> fastgru.GRU and fastgru.LSTM.

The public functions take both recurrences: ``from_keras(..., cell="lstm")`` (and
``from_keras_bidirectional``) read a Keras LSTM's arrays, and ``to_keras`` /
``to_keras_bidirectional`` write an LSTM's for an LSTM module. This docstring states the GRU's
mapping; lstm_keras.py states the LSTM's (gates i, f, c, o, nn.LSTM's own order: a transpose, and
Keras' one bias to bias_ih).

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

from ..functional.gate_order import swap_rz
from .layer_weights import (as_tensor, build_gru, build_lstm, check_bool, family_of, is_lstm, keras_kernels,
                            lstm_module_layer, module_layer, to_numpy)
from .lstm_keras import lstm_direction, lstm_hint, lstm_keras_arrays

__all__ = ["from_keras", "to_keras", "from_keras_bidirectional", "to_keras_bidirectional"]


def _direction(kernel, recurrent_kernel, bias, reset_after: bool, caller: str, where: str = ""):
    """Validate one Keras layer's arrays -> (input_size, hidden_size, (w_ih, w_hh, b_ih, b_hh))
    in nn.GRU's layout and gate order. ``where`` prefixes argument names (bidirectional)."""
    kernel, recurrent_kernel, input_size, H = keras_kernels(
        kernel, recurrent_kernel, "z, r, h", caller, where, lstm_hint
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


def _reset_after(reset_after, family: str, caller: str) -> bool:
    """The GRU's ``reset_after`` (None: Keras' default, True); an LSTM has none to give."""
    if family == "lstm":
        if reset_after is not None:
            raise ValueError(
                f"{caller}: reset_after={reset_after!r} is a GRU setting, and cell='lstm' has none: leave it out"
            )
        return True
    reset_after = True if reset_after is None else reset_after
    check_bool(reset_after, "reset_after", caller)
    return reset_after


def from_keras(
    kernel,
    recurrent_kernel,
    bias=None,
    *,
    cell: str = "gru",
    reset_after: bool | None = None,
    batch_first: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
):
    """A one-layer, one-direction ``fastgru.GRU`` (or with ``cell="lstm"``, ``fastgru.LSTM``)
    holding a Keras GRU (LSTM) layer's weights.

    ``kernel`` (input_size, 3H), ``recurrent_kernel`` (H, 3H) and ``bias`` are the arrays of
    ``layer.get_weights()`` (numpy arrays, torch tensors or anything numpy can read), gates in
    Keras' order z, r, h: ``from_keras(*layer.get_weights(), reset_after=layer.reset_after)``.
    ``bias``: (2, 3H) for ``reset_after=True`` (row 0 -> bias_ih, row 1 -> bias_hh), (3H,) for
    ``reset_after=False`` (-> bias_ih, with bias_hh = 0: that Keras GRU has one bias), None for a
    ``use_bias=False`` layer (-> a ``bias=False`` module).

    The module gets ``reset_after`` (None means Keras' default, True, which is nn.GRU's formula;
    with it the module's state_dict also loads into torch.nn.GRU), ``batch_first`` (True by
    default: Keras' inputs are (batch, time, features)), ``dtype`` and ``device``. Wrong shapes,
    dimensions or types raise ValueError / TypeError naming the argument.

    ``cell="lstm"``: a Keras LSTM layer's ``kernel`` (input_size, 4H), ``recurrent_kernel``
    (H, 4H) and ``bias`` (4H,) or None, gates i, f, c, o (nn.LSTM's i, f, g, o: the same order):
    ``from_keras(*layer.get_weights(), cell="lstm")`` gives a ``fastgru.LSTM`` with
    ``weight_ih = kernel.T``, ``weight_hh = recurrent_kernel.T``, ``bias_ih = bias`` and
    ``bias_hh = 0`` (see lstm_keras.py). ``reset_after`` is the GRU's and is refused there.
    """
    family = family_of(cell, "from_keras")
    reset_after = _reset_after(reset_after, family, "from_keras")
    if family == "lstm":
        input_size, H, tensors = lstm_direction(kernel, recurrent_kernel, bias, "from_keras")
        return build_lstm("from_keras", [tensors], input_size=input_size, hidden_size=H, batch_first=batch_first,
                          dtype=dtype, device=device)
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


def _module_arrays(module, layer, caller: str, directions_wanted: int, other: str) -> list:
    """The Keras arrays of ``layer`` of a GRU or LSTM module, checking its number of directions."""
    if is_lstm(module):
        directions, proj_size = lstm_module_layer(module, layer, caller)
        kind = "LSTM"
    else:
        directions, reset_after = module_layer(module, layer, caller)
        kind = "GRU"
    if len(directions) != directions_wanted:
        if directions_wanted == 1:
            raise ValueError(
                f"{caller}: the module has bidirectional=True, and a Keras {kind} layer has one direction: "
                f"use {other}(module) for a keras.layers.Bidirectional({kind}(...)) layer"
            )
        raise ValueError(f"{caller}: the module has bidirectional=False (or is a cell): use {other}(module)")
    if kind == "LSTM":
        return lstm_keras_arrays(directions, proj_size, caller)
    return _keras_arrays(directions, reset_after)


def to_keras(module, *, layer: int | None = None) -> list:
    """A GRU (or LSTM) layer's weights as the list Keras' ``layer.set_weights`` takes:
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

    An LSTM module (fastgru.LSTM / LSTMCell, torch.nn.LSTM / LSTMCell) gives a Keras LSTM's
    ``[kernel (input_size, 4H), recurrent_kernel (H, 4H), bias (4H,)]``, gates i, f, c, o, with
    ``bias = bias_ih + bias_hh`` (exact: nn.LSTM only ever adds them), for
    ``keras.layers.LSTM(H, use_bias=module.bias)``. ``proj_size > 0`` has no Keras form
    (ValueError).
    """
    return _module_arrays(module, layer, "to_keras", 1, "to_keras_bidirectional")


def _split_weights(weights, name: str):
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple)):
        raise TypeError(
            f"from_keras_bidirectional: {name} must be a list [kernel, recurrent_kernel] or "
            f"[kernel, recurrent_kernel, bias] (one GRU or LSTM layer's get_weights()), got {type(weights).__name__}"
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
    cell: str = "gru",
    reset_after: bool | None = None,
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

    ``cell="lstm"``: ``keras.layers.Bidirectional(LSTM(...))``'s two lists, each mapped as in
    ``from_keras(..., cell="lstm")``, give a ``fastgru.LSTM(bidirectional=True)`` (its ``h_n`` and
    ``c_n`` forward then backward).
    """
    caller = "from_keras_bidirectional"
    family = family_of(cell, caller)
    reset_after = _reset_after(reset_after, family, caller)

    def direction(weights, name):
        arrays = _split_weights(weights, name)
        if family == "lstm":
            return lstm_direction(*arrays, caller, f"{name} ")
        return _direction(*arrays, reset_after, caller, f"{name} ")

    fwd, bwd = direction(forward_weights, "forward_weights"), direction(backward_weights, "backward_weights")
    if fwd[:2] != bwd[:2] or (fwd[2][2] is None) != (bwd[2][2] is None):
        raise ValueError(
            "from_keras_bidirectional: forward_weights and backward_weights must describe layers of the same "
            f"input_size, hidden_size and use_bias; got (input_size, hidden_size) {fwd[:2]} and {bwd[:2]}, "
            f"bias {'present' if fwd[2][2] is not None else 'absent'} and "
            f"{'present' if bwd[2][2] is not None else 'absent'}"
        )
    if family == "lstm":
        return build_lstm(caller, [fwd[2], bwd[2]], input_size=fwd[0], hidden_size=fwd[1], batch_first=batch_first,
                          dtype=dtype, device=device)
    return build_gru(
        caller, [fwd[2], bwd[2]], input_size=fwd[0], hidden_size=fwd[1],
        reset_after=reset_after, batch_first=batch_first, dtype=dtype, device=device,
    )


def to_keras_bidirectional(module, *, layer: int | None = None) -> list:
    """A bidirectional module's weights as the flat list ``keras.layers.Bidirectional(GRU(...))``'s
    ``set_weights`` takes: the forward layer's ``[kernel, recurrent_kernel, bias]`` then the
    backward layer's (``_reverse`` parameters), each as in ``to_keras``. ``layer`` as in
    ``to_keras``; a module that is not bidirectional raises ValueError (use ``to_keras``). A
    bidirectional LSTM gives ``keras.layers.Bidirectional(LSTM(...))``'s list the same way."""
    return _module_arrays(module, layer, "to_keras_bidirectional", 2, "to_keras")
