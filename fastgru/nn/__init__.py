"""fastgru's modules, drop-ins for torch.nn's and the models built from them."""

from .attention import AdditiveAttention, AttentionPooling, DotAttention
from .explain import explain
from .decoder import AttentionGRUDecoder, DecoderState, greedy_decode
from .models import GRUAttention
from .lstm import LSTM, LSTMCell
from .convert import ConvertWarning, convert
from .recurrent import GRU, GRUCell

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "convert", "ConvertWarning", "AttentionPooling", "AdditiveAttention", "DotAttention",
           "GRUAttention", "AttentionGRUDecoder", "DecoderState", "greedy_decode", "explain"]
