"""fastgru.explain: which strategy a GRU or LSTM call will take, and why, without running it."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .. import functional as F_
from ..functional.lstm import check_lstm_inputs
from ..functional.recurrent import check_gru_inputs
from .lstm import LSTM
from .recurrent import GRU


def explain(module: GRU | LSTM, input, hx=None, *, lengths=None) -> F_.Explanation:
    """What ``module(input, hx, lengths=lengths)`` would run here and now (device, dtype, grad
    mode and the module's train/eval state included): the backend, the strategy (rows,
    stepwise, persistent, or cudnn: PyTorch's own operator), the reason (forced, the measured
    table's entry with the measurement behind it, or the rule applied), and the kernels' tiles
    (an LSTM: its first layer's). ``str()`` of the result is one readable line. Nothing is
    launched; on a GPU the candidate kernels are compiled (from Triton's cache after the first
    time), as the call would."""
    if not isinstance(module, (GRU, LSTM)):
        raise TypeError(f"explain: module must be a fastgru.GRU or fastgru.LSTM, got {type(module).__name__} "
                        "(fastgru.convert(model) swaps torch.nn.GRU / LSTM for them)")
    if isinstance(input, PackedSequence):
        input, lengths = pad_packed_sequence(input, batch_first=module.batch_first)
    if not isinstance(input, torch.Tensor) or input.dim() not in (2, 3):
        raise TypeError("explain: input must be a 2-D or 3-D Tensor or a PackedSequence, as the module's forward takes")
    if input.dim() == 2:
        input = input.unsqueeze(0 if module.batch_first else 1)
        if hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(module, LSTM) else hx.unsqueeze(1)
    B = input.shape[0] if module.batch_first else input.shape[1]
    if hx is None:
        hx = module._zero_state(B, input)
    weights = module._layer_weights()
    args = (module.bidirectional, module.batch_first)
    if isinstance(module, LSTM):
        check_lstm_inputs(input, hx, weights, module.num_layers, *args, lengths)
        return F_.explain_lstm(input, hx, weights, *args, module.training, lengths, module.strategy)
    check_gru_inputs(input, hx, weights, module.num_layers, *args, lengths)
    return F_.explain_gru(input, hx, weights, *args, module.training, lengths, module.strategy, module.reset_after)
