"""The LSTM providers of a case (time-major input (T, B, I), (h0 (L * D, B, R), c0 (L * D, B, H)),
R = proj_size or H): fastgru.LSTM and nn.LSTM (cuDNN on CUDA), both holding one nn.LSTM's weights;
the ground truth is fastgru.reference.lstm in float64. The inputs, the timed step and the checked
results (output, h_n, c_n and, training, every gradient) are the GRU's (gru_providers.recurrent_*).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .. import reference
from . import flops
from .cases import Case
from .gru_providers import recurrent_inputs, recurrent_provider, recurrent_results
from .providers import Results, Setup, Unavailable, backend_name

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def lstm_weights(module: nn.Module) -> list[tuple]:
    """(w_ih, w_hh, b_ih, b_hh, w_hr) per layer and direction, forward first, None where absent:
    what reference.lstm takes, read off nn.LSTM's parameter names."""
    D = 2 if module.bidirectional else 1
    out = []
    for k in range(module.num_layers * D):
        sfx = f"_l{k // D}" + ("_reverse" if k % D else "")
        out.append(tuple(getattr(module, f"{w}{sfx}", None) for w in WEIGHT_NAMES))
    return out


def lstm_setup(case: Case, device, copies: int = 1) -> Setup:
    s, training = case.shape, case.mode == "training"
    H, P = s["H"], s.get("proj", 0)
    R = P or H

    def make_src():
        return nn.LSTM(s["I"], H, s["layers"], bidirectional=s["bidirectional"], proj_size=P)

    src, lengths, sets = recurrent_inputs(case, device, copies, make_src, state_sizes=(R, H), out_size=R)

    def make_fastgru():
        import fastgru

        if not hasattr(fastgru, "LSTM"):
            raise Unavailable("fastgru.LSTM is not available in this build")
        mod = fastgru.LSTM(s["I"], H, s["layers"], bidirectional=s["bidirectional"], proj_size=P,
                           device=device, dtype=case.torch_dtype)
        mod.load_state_dict(src.state_dict())
        return mod

    def reference_results() -> Results:
        ref = copy.deepcopy(src).to(torch.float64)
        x, (h0, c0), g = sets[0]

        def fn(inp, hx):
            return reference.lstm(inp, hx, lstm_weights(ref), ref.num_layers, ref.bidirectional, lengths=lengths)
        return recurrent_results(fn, list(ref.named_parameters()), x.double(), (h0.double(), c0.double()), g.double(),
                                 None, training)

    providers = {
        "fastgru": recurrent_provider(make_fastgru, sets, lengths, training, backend=backend_name(device)),
        "nn.LSTM": recurrent_provider(lambda: src, sets, lengths, training),
    }
    tokens = int(lengths.sum()) if lengths is not None else s["T"] * s["B"]
    elem = torch.tensor([], dtype=case.torch_dtype).element_size()
    cost = flops.lstm(s["T"], s["B"], s["I"], H, s["layers"], s["bidirectional"], case.mode, elem, tokens, P)
    D = 2 if s["bidirectional"] else 1
    in_bytes = elem * (s["T"] * s["B"] * (s["I"] + D * R))
    return Setup(reference_results, providers, ("fastgru",), "nn.LSTM", tokens, cost, in_bytes, tf32_follows="cudnn")
