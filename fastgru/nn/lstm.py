"""LSTM and LSTMCell: drop-in replacements for torch.nn.LSTM / nn.LSTMCell.

Same constructor arguments (proj_size included), parameter names, shapes and init as torch.nn,
so state_dicts load both ways; the state is the pair (h, c) as in nn. Everything that is not
about that state (checks, parameters, repr, unbatched and packed input, ``lengths=``) is the
GRU's, shared through nn/recurrent.py's RecurrentBase and CellBase.
"""

from __future__ import annotations

import torch

from .. import functional as F_
from ..functional.lstm import state_pair
from .recurrent import CellBase, RecurrentBase, _rank_words, check_strategy_argument

__all__ = ["LSTM", "LSTMCell"]


class LSTM(RecurrentBase):
    """Multi-layer LSTM with nn.LSTM's interface (``proj_size`` > 0: h_t = W_hr (o_t * tanh(c_t)),
    of proj_size features); the recurrence runs in fused Triton kernels on GPU, the cell state in
    fp32 (fp64 for fp64) whatever the input's dtype.

    forward(input, hx=None, *, lengths=None): hx = (h_0, c_0) as nn.LSTM takes it; returns
    (output, (h_n, c_n)). ``lengths`` as in fastgru.GRU.

    Extra keyword: ``strategy`` (None, "rows", "stepwise", "persistent" or "cudnn") forces a
    recurrence kernel, or PyTorch's own LSTM operator. None: the dispatcher's rules.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, strategy: str | None = None):
        super().__init__()
        check_strategy_argument(strategy)
        self._setup("LSTM", 4, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                    proj_size, strategy, {"device": device, "dtype": dtype})

    def _zero_state(self, B, like):
        rows = self.num_layers * (2 if self.bidirectional else 1)
        h = torch.zeros(rows, B, self.proj_size or self.hidden_size, dtype=like.dtype, device=like.device)
        return h, torch.zeros(rows, B, self.hidden_size, dtype=like.dtype, device=like.device)

    def _check_state(self, hx, batched):
        h, c = state_pair(hx)
        words, rank = _rank_words(batched)
        if h.dim() != rank or c.dim() != rank:
            raise RuntimeError(f"For {words} input, hx and cx should also be {rank}-D but got ({h.dim()}-D, "
                               f"{c.dim()}-D) tensors")
        return (h, c) if batched else (h.unsqueeze(1), c.unsqueeze(1))

    def _unbatch_state(self, state):
        return state[0].squeeze(1), state[1].squeeze(1)

    def _run_pytorch_packed(self, packed, hx):
        weights = self._layer_weights()
        if F_.lstm_packed_runs_pytorch(packed.data, hx, weights, self.bidirectional, self.training, self.strategy):
            return F_.pytorch_packed_lstm(packed, hx, weights, self.num_layers, self.bidirectional, self.dropout,
                                          self.training)
        return None

    def _export(self, input, hx, lengths):
        from ..functional.onnx_forms import lstm_onnx_forward

        return lstm_onnx_forward(self, input, hx, lengths)

    def _call(self, input, hx, lengths):
        return F_.lstm(input, hx, self._layer_weights(), self.num_layers, self.bidirectional, self.batch_first,
                       self.dropout, self.training, lengths, self.strategy)


class LSTMCell(CellBase):
    """nn.LSTMCell's interface: forward(input, hx=None) with hx = (h, c) -> (h', c'); one fused
    kernel per step on GPU (both matmuls and the gates), the cell state in fp32."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self._setup(4, input_size, hidden_size, bias, {"device": device, "dtype": dtype})

    def _zero_state(self, B, like):
        zeros = torch.zeros(B, self.hidden_size, dtype=like.dtype, device=like.device)
        return zeros, zeros

    def _check_state(self, hx, batched):
        state = state_pair(hx, "LSTMCell: hx", TypeError)
        for k, value in enumerate(state):
            if value.dim() not in (1, 2):
                raise ValueError(f"LSTMCell: Expected hx[{k}] to be 1D or 2D, got {value.dim()}D instead")
        return state if batched else (state[0].unsqueeze(0), state[1].unsqueeze(0))

    def _unbatch_state(self, state):
        return state[0].squeeze(0), state[1].squeeze(0)

    def _step(self, input, hx):
        return F_.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
