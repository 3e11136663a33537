"""fastgru: fused Triton kernels for GRUs, LSTMs and attention, a drop-in for torch.nn.GRU and nn.LSTM."""

from . import backend, functional, reference, testing
from .nn import (AdditiveAttention, AttentionGRUDecoder, AttentionPooling, DecoderState, DotAttention, GRU, GRUAttention,
                 GRUCell, LSTM, LSTMCell, convert, explain, greedy_decode)
from .functional import additive_attention, attention_pooling, dot_attention
from .interop import from_keras, from_keras_bidirectional, from_onnx, to_keras, to_keras_bidirectional, to_onnx

__version__ = "0.1.0"

__all__ = [
    "GRU", "GRUCell", "LSTM", "LSTMCell", "convert", "explain", "AttentionPooling", "AdditiveAttention", "DotAttention",
    "GRUAttention",
    "AttentionGRUDecoder", "DecoderState", "greedy_decode",
    "attention_pooling", "additive_attention", "dot_attention", "backend", "functional", "reference", "testing",
    "from_keras", "to_keras", "from_keras_bidirectional", "to_keras_bidirectional", "from_onnx", "to_onnx",
]
