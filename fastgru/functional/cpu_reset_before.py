"""The CPU path of reset_after=False (PyTorch has no operator for it): the kernels' algorithm in
PyTorch ops. Per layer and direction the input projection (with all of b_hh, which sits outside
the reset gate in this formulation) is one GEMM; each step is two small matmuls, W_h{r,z} h and
W_hn (r * h). Same results as reference.gru (tested), without its per-step gathers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reference import stack_layers


def _within_length_reversal(lengths, T, device):
    """(T, B) time indices that reverse each row's first lengths[b] steps and leave the rest:
    the reverse direction runs as a forward loop over this gather (an involution, so the same
    gather puts its outputs back)."""
    s = torch.arange(T, device=device)[:, None]
    return torch.where(s < lengths[None, :], lengths[None, :] - 1 - s, s)


def _direction(x, h, w_ih, w_hh, b_ih, b_hh, valid):
    """One direction over time-major x (T, B, I) from state h (B, H); valid (T, B, 1) bool or
    None. Returns (out (T, B, H), zero where not valid; h_n: each row's state at its length)."""
    H = h.shape[-1]
    gx = F.linear(x, w_ih, b_ih + b_hh if b_ih is not None else None)
    w_rz, w_n = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
    outs = []
    for s in range(x.shape[0]):
        r, z = torch.sigmoid(torch.addmm(gx[s, :, : 2 * H], h, w_rz)).chunk(2, dim=-1)
        n = torch.tanh(torch.addmm(gx[s, :, 2 * H :], r * h, w_n))
        h_new = n + z * (h - n)
        if valid is None:
            h = h_new
            outs.append(h_new)
        else:
            h = torch.where(valid[s], h_new, h)
            outs.append(h_new * valid[s])
    return torch.stack(outs), h


def gru_reset_before(x, hx, weights, num_layers, bidirectional, dropout, training, lengths):
    """A stack of reset_after=False GRU layers over time-major x (T, B, I); arguments as
    reference.gru. Returns (out (T, B, D*H), h_n (L*D, B, H))."""
    T = x.shape[0]
    valid = order = None
    if lengths is not None:
        lengths = lengths.to(device=x.device, dtype=torch.long)
        valid = (torch.arange(T, device=x.device)[:, None] < lengths[None, :])[..., None]
        order = _within_length_reversal(lengths, T, x.device)[..., None]

    def direction(inp, h, w, reverse):
        if reverse:  # each row's valid steps in reverse
            inp = inp.flip(0) if order is None else inp.gather(0, order.expand_as(inp))
        out, h = _direction(inp, h, *w, valid)
        if reverse:
            out = out.flip(0) if order is None else out.gather(0, order.expand_as(out))
        return out, h

    return stack_layers(x, hx, weights, num_layers, bidirectional, dropout, training, direction)
