"""fastgru's public functions, every family in one namespace: ``gru``, ``gru_cell``, ``lstm``,
``lstm_cell``, ``attention_pooling`` (and its hop penalty ``attention_penalty``), ``additive_attention``,
``dot_attention`` (and ``dot_attention_path``, which says which implementation a call runs),
``attention_decoder`` (teacher forcing) with ``decoder_state`` and ``attention_decoder_step``
(one token at a time); ``explain_gru`` / ``explain_lstm`` (which strategy a call takes, and why).

Each validates its inputs (raising before any kernel runs), applies the autocast policy and
hands the call to the backend that fastgru.backend picks: the custom ops (Triton kernels), PyTorch's
own operators, or the reference.
"""

from .attention import additive_attention, attention_penalty, attention_pooling, dot_attention, dot_attention_path
from .decoder import DecoderState, attention_decoder, attention_decoder_step, decoder_state
from .dispatch import Explanation, explain_gru, packed_runs_pytorch
from .lstm import explain_lstm, lstm, lstm_cell, lstm_packed_runs_pytorch, pytorch_packed_lstm
from .recurrent import gru, gru_cell, pytorch_packed_gru

__all__ = [
    "gru", "gru_cell", "lstm", "lstm_cell", "attention_pooling", "attention_penalty", "additive_attention",
    "dot_attention", "dot_attention_path", "attention_decoder", "attention_decoder_step", "decoder_state",
    "DecoderState", "explain_gru", "Explanation", "packed_runs_pytorch", "pytorch_packed_gru",
    "lstm_packed_runs_pytorch", "pytorch_packed_lstm", "explain_lstm",
]
