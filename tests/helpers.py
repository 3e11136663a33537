"""Shared test helpers: run a module forward+backward and collect every gradient."""

import torch
from torch.nn.utils.rnn import PackedSequence


def _data(t):
    return t.data if isinstance(t, PackedSequence) else t


def forward_backward(module, x, hx=None, seed=0):
    """Run module(x, hx), backprop random cotangents (fixed by ``seed``) through every output.
    Returns (outputs, grads) where grads covers x (if it requires grad), hx and all parameters."""
    out = module(x, hx) if hx is not None else module(x)
    outs = out if isinstance(out, tuple) else (out,)
    outs = [_data(o) for o in outs]
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in outs)
    leaves = [t for t in (_data(x), hx) if t is not None and t.requires_grad] + list(module.parameters())
    grads = torch.autograd.grad(loss, leaves, allow_unused=False)
    return [o.detach() for o in outs], list(grads)
