"""Which implementation runs a GRU call on the kernel backends, and why.

The dispatcher's measured table (launchers/plan_table.py) may name ``cudnn``: PyTorch's own GRU
operator (cuDNN on CUDA), run on the module's own parameters where no fastgru kernel beat it.
It is taken only where its result means exactly what the kernels' would (cudnn_refusal);
elsewhere the kernels run, with the dispatcher's rules. ``explain`` reports the decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import backend
from ..ops.gru_dispatch import KERNEL_STRATEGIES, STRATEGIES, describe_entry, gru_layer_forward_plan, table_choice


@dataclass(frozen=True)
class Explanation:
    """What a GRU or LSTM call runs: ``backend`` (triton, interpret, torch, reference), ``strategy``
    (rows, stepwise, persistent, cudnn; None where no kernel runs), ``reason`` (forced, the
    table entry taken, or the rule applied), ``mode`` (inference or training: whether a
    gradient can flow) and ``plan`` (the kernels' block sizes, None for cudnn and off the kernels)."""

    backend: str
    strategy: str | None
    reason: str
    mode: str
    plan: object | None = None

    def __str__(self) -> str:
        where = f"{self.strategy} ({self.backend})" if self.strategy else self.backend
        tiles = ""
        if self.plan is not None:
            p = self.plan
            tiles = f"; tiles BLOCK_B={p.block_b} BLOCK_H={p.block_h} K={p.block_k}, {p.programs} program{'s' if p.programs != 1 else ''} per direction"
            if p.strategy == "persistent":
                tiles += f", {p.num_warps} warps, variant {p.variant.name}"
        return f"{where}, {self.mode}: {self.reason}{tiles}"


def stack_directions(ws):
    """One layer's weights for the layer kernels, both directions in one launch: (w_ih (D*3H, I),
    w_hh (D, 3H, H), b_ih (D*3H,) or None, b_hh (D, 3H) or None) from its directions' tuples."""
    one = len(ws) == 1
    w_ih = ws[0][0] if one else torch.cat([w[0] for w in ws])
    w_hh = torch.stack([w[1] for w in ws])
    if ws[0][2] is None:
        return w_ih, w_hh, None, None
    b_ih = ws[0][2] if one else torch.cat([w[2] for w in ws])
    return w_ih, w_hh, b_ih, torch.stack([w[3] for w in ws])


def check_strategy(strategy) -> None:
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {strategy!r}")


def needs_grad(input, hx, weights) -> bool:
    """Whether a gradient can flow from this call (the table's mode: training, else inference)."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (input, hx, *(w for ws in weights for w in ws)))


def cudnn_refusal(device, reset_after: bool, grad: bool, training: bool, lengths) -> str | None:
    """Why PyTorch's own GRU operator would not mean what the kernels mean for this call (None:
    it would). Its operator has no reset_after=False; cuDNN's RNN backward runs only in training
    mode; it is not promised deterministic, the kernels are; lengths on the GPU would have to be
    read on the host to pack (PyTorch's packing needs them there); and under torch.compile the
    kernels' custom ops keep the graph whole (the table's cudnn rows are not taken there)."""
    device = torch.device(device)
    if not reset_after:
        return "PyTorch's GRU operator has no reset_after=False formulation"
    if device.type == "cuda" and not (torch.backends.cudnn.enabled and torch.backends.cudnn.is_available()):
        return "cuDNN is disabled or unavailable (torch.backends.cudnn)"
    if grad and not training:
        return "a gradient is needed in eval mode, and cuDNN's RNN backward runs only in training mode"
    if torch.are_deterministic_algorithms_enabled():
        return "torch.use_deterministic_algorithms(True) is on; the kernels are deterministic, cuDNN's RNN is not promised to be"
    if lengths is not None and torch.as_tensor(lengths).device.type != "cpu":
        return "lengths is on the GPU; packing for PyTorch's operator would read it on the host"
    if torch.compiler.is_compiling():
        return "inside torch.compile the kernels' custom ops are traced instead"
    return None


def choose(input, hx, weights, bidirectional, batch_first, training, lengths, strategy, reset_after,
           B: int | None = None) -> tuple[str | None, str]:
    """(strategy, reason) for a call on a kernel backend: ``cudnn`` where it is forced or the
    table names it and nothing refuses it; otherwise the strategy handed to the kernels (None:
    the dispatcher plans by the table and its rules). A forced ``cudnn`` that would not mean the
    same raises ValueError."""
    grad = needs_grad(input, hx, weights)
    if strategy == "cudnn":
        why = cudnn_refusal(input.device, reset_after, grad, training, lengths)
        if why is not None:
            raise ValueError(f"strategy='cudnn' cannot run this call: {why}")
        return "cudnn", "forced"
    if strategy is not None:
        return strategy, "forced"
    D = 2 if bidirectional else 1
    if B is None:
        B = input.shape[0] if batch_first else input.shape[1]
    H = weights[0][1].shape[1]
    entry = table_choice(B, H, D, input.device, weights[0][1].dtype, "training" if grad else "inference", reset_after)
    if entry is not None and entry["strategy"] == "cudnn":
        why = cudnn_refusal(input.device, reset_after, grad, training, lengths)
        if why is None:
            return "cudnn", describe_entry(entry)
    return None, ""


def packed_runs_pytorch(data, hx, weights, B, bidirectional, training, strategy, reset_after) -> bool:
    """Whether a PackedSequence call runs PyTorch's own operator on the packed data directly, as
    nn.GRU does (no padding, no host read of the lengths): on the CPU backend (reset_after=True),
    and on the kernel backends where ``cudnn`` is chosen (forced, or the table's entry)."""
    which = backend.backend_for(data)
    if which == "reference":
        return False
    if which == "torch":
        if strategy == "cudnn":
            choose(data, hx, weights, bidirectional, False, training, None, strategy, reset_after, B=B)
        return reset_after
    return choose(data, hx, weights, bidirectional, False, training, None, strategy, reset_after, B=B)[0] == "cudnn"


def explain_gru(input, hx, weights, bidirectional, batch_first, training, lengths, strategy, reset_after) -> Explanation:
    """The Explanation of one batched call (input 3-D, hx (L*D, B, H)), decided as gru() decides."""
    check_strategy(strategy)
    which = backend.backend_for(input)
    mode = "training" if needs_grad(input, hx, weights) else "inference"
    if which == "reference":
        return Explanation(which, None, "FASTGRU_BACKEND=reference: the readable PyTorch loop (fastgru/reference.py)", mode)
    if which == "torch":
        if not reset_after:
            return Explanation(which, None, "CPU: the reset-before GRU in PyTorch operations (no PyTorch operator has it)", mode)
        return Explanation(which, None, "CPU: PyTorch's own GRU operator (the kernels are GPU kernels)", mode)
    chosen, why = choose(input, hx, weights, bidirectional, batch_first, training, lengths, strategy, reset_after)
    if chosen == "cudnn":
        return Explanation(which, "cudnn", why, mode)
    w_ih, w_hh, _, b_hh = stack_directions(weights[: 2 if bidirectional else 1])
    plan, reason = gru_layer_forward_plan(input, w_ih, w_hh, b_hh, batch_first, mode == "training", chosen, reset_after)
    return Explanation(which, plan.strategy, reason, mode, plan)


__all__ = ["Explanation", "KERNEL_STRATEGIES", "STRATEGIES", "check_strategy", "choose", "cudnn_refusal",
           "explain_gru", "needs_grad", "packed_runs_pytorch", "stack_directions"]
