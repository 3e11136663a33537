"""Weights from and to other frameworks' GRU and LSTM layouts.

``from_keras`` / ``to_keras`` (and ``from_keras_bidirectional`` / ``to_keras_bidirectional``):
a Keras GRU or LSTM layer's ``get_weights()`` arrays. ``from_onnx`` / ``to_onnx``: an ONNX GRU
or LSTM node's W, R, B tensors and attributes. The ``from_*`` functions read a GRU's arrays by
default and an LSTM's with ``cell="lstm"``; the ``to_*`` functions take the module's own kind.
``swap_rz``: the GRU's (r, z, n) <-> (z, r, h) gate reordering Keras and ONNX share;
``lstm_to_onnx`` / ``lstm_from_onnx``: the LSTM's (i, f, g, o) <-> ONNX's (i, o, f, c) (Keras
keeps nn.LSTM's order). See each module's docstring for the exact mapping.
"""

from ..functional.gate_order import lstm_from_onnx, lstm_to_onnx, swap_rz
from .keras import from_keras, from_keras_bidirectional, to_keras, to_keras_bidirectional
from .onnx_weights import from_onnx, to_onnx

__all__ = [
    "from_keras", "to_keras", "from_keras_bidirectional", "to_keras_bidirectional", "from_onnx", "to_onnx",
    "swap_rz", "lstm_to_onnx", "lstm_from_onnx",
]
