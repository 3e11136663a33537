"""Weights from and to other frameworks' GRU layouts.

``from_keras`` / ``to_keras`` (and ``from_keras_bidirectional`` / ``to_keras_bidirectional``):
a Keras GRU layer's ``get_weights()`` arrays. ``from_onnx`` / ``to_onnx``: an ONNX GRU node's
W, R, B tensors and attributes. ``swap_rz``: the (r, z, n) <-> (z, r, n) gate reordering they
share. See each module's docstring for the exact mapping.
"""

from .gate_order import swap_rz
from .keras import from_keras, from_keras_bidirectional, to_keras, to_keras_bidirectional
from .onnx_weights import from_onnx, to_onnx

__all__ = [
    "from_keras", "to_keras", "from_keras_bidirectional", "to_keras_bidirectional", "from_onnx", "to_onnx",
    "swap_rz",
]
