"""Keras LSTM weights <-> fastgru.LSTM: the LSTM's half of ``from_keras`` / ``to_keras``
(keras.py holds the public functions, which take this mapping for ``cell="lstm"`` and for LSTM
modules).

A Keras LSTM layer (``keras.layers.LSTM``, ``keras.layers.LSTMCell``; tf.keras alike) holds, with
H = units and gate blocks along the last axis in the order **i, f, c, o** (fastgru / nn.LSTM:
i, f, g, o, the same order; Keras' c is PyTorch's g):

* ``kernel``            (input_size, 4H): multiplies the input from the right, ``x @ kernel``
* ``recurrent_kernel``  (H, 4H):          ``h @ recurrent_kernel``
* ``bias``              (4H,), one bias, absent when ``use_bias=False``

Keras' cell, with its default activations (``activation="tanh"``,
``recurrent_activation="sigmoid"``)::

    i  = sigmoid(x K_i + h U_i + b_i)        f = sigmoid(x K_f + h U_f + b_f)
    c' = f * c + i * tanh(x K_c + h U_c + b_c)
    o  = sigmoid(x K_o + h U_o + b_o)        h' = o * tanh(c')

which is nn.LSTM's cell with b_ih + b_hh in place of b, so the mapping is a transpose::

    weight_ih = kernel.T      weight_hh = recurrent_kernel.T      bias_ih = bias      bias_hh = 0

and back (``to_keras``) ``bias = bias_ih + bias_hh``, exact: the two biases are only ever added.
``unit_forget_bias`` only initialises the bias (its f block to one): the arrays carry it.

No projection: Keras' LSTM has none, so a module with ``proj_size > 0`` has no Keras form. Not
carried by the weights either, as for the GRU: other activations, ``go_backwards``, masking
(pass ``lengths=``), ``stateful``, dropout.
"""

from __future__ import annotations

import torch

from .layer_weights import as_tensor, keras_kernels, to_numpy


def lstm_direction(kernel, recurrent_kernel, bias, caller: str, where: str = ""):
    """Validate one Keras LSTM layer's arrays -> (input_size, hidden_size, (w_ih, w_hh, b_ih,
    b_hh)) in nn.LSTM's layout (b_hh zero: Keras has one bias). ``where`` prefixes argument
    names (bidirectional)."""
    kernel, recurrent_kernel, input_size, H = keras_kernels(
        kernel, recurrent_kernel, "i, f, c, o", caller, where, gru_hint, " for cell='lstm'"
    )
    w_ih, w_hh = kernel.T, recurrent_kernel.T
    if bias is None:
        return input_size, H, (w_ih, w_hh, None, None)
    bias = as_tensor(bias, f"{where}bias", caller, f"({4 * H},)")
    if tuple(bias.shape) != (4 * H,):
        hint = ""
        if tuple(bias.shape) == (8 * H,):
            hint = (
                "; an (8 * hidden_size,) bias is a CuDNNLSTM's [input bias, recurrent bias]: pass "
                "bias[:4 * hidden_size] + bias[4 * hidden_size:]"
            )
        raise ValueError(
            f"{caller}: {where}bias must have shape (4 * hidden_size,) = {(4 * H,)} (a Keras LSTM has one bias), "
            f"got {tuple(bias.shape)}{hint}"
        )
    return input_size, H, (w_ih, w_hh, bias, torch.zeros(4 * H, dtype=bias.dtype))


def gru_hint(kernel, recurrent_kernel) -> str:
    """A hint for LSTM-shaped errors whose arrays are a Keras GRU's (z, r, h; 3H columns)."""
    if recurrent_kernel.dim() == 2 and kernel.dim() == 2:
        h = recurrent_kernel.shape[0]
        if h and tuple(recurrent_kernel.shape) == (h, 3 * h) and kernel.shape[1] == 3 * h:
            return "; these are a GRU's arrays (3 * hidden_size columns): pass cell='gru' (the default)"
    return ""


def lstm_hint(kernel, recurrent_kernel) -> str:
    """A hint for GRU-shaped errors whose arrays are a Keras LSTM's (i, f, c, o; 4H columns)."""
    if getattr(recurrent_kernel, "dim", lambda: 0)() == 2 and getattr(kernel, "dim", lambda: 0)() == 2:
        h = recurrent_kernel.shape[0]
        if h and tuple(recurrent_kernel.shape) == (h, 4 * h) and kernel.shape[1] == 4 * h:
            return "; these are an LSTM's arrays (4 * hidden_size columns, gates i, f, c, o): pass cell='lstm'"
    return ""


def lstm_keras_arrays(directions, proj_size: int, caller: str) -> list:
    """[kernel, recurrent_kernel(, bias)] per direction from (w_ih, w_hh, b_ih, b_hh, w_hr)."""
    if proj_size:
        raise ValueError(
            f"{caller}: the module has proj_size={proj_size}, and Keras' LSTM has no projection (h = W_hr (o * "
            "tanh(c)) has no Keras form): only proj_size=0 LSTMs convert"
        )
    out = []
    for w_ih, w_hh, b_ih, b_hh, _ in directions:
        out += [to_numpy(w_ih.detach().T), to_numpy(w_hh.detach().T)]
        if b_ih is not None:
            # bfloat16 comes back as float32 anyway: add in float32, rounding once.
            wide = torch.float32 if b_ih.dtype == torch.bfloat16 else b_ih.dtype
            out.append(to_numpy(b_ih.detach().to(wide) + b_hh.detach().to(wide)))
    return out
