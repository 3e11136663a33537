"""FLOP and byte counts for every benchmarked op, each counted once, in one function per op.

Conventions (used by the TFLOP/s column of every table):
- A multiply-add counts as 2 FLOPs; an elementwise op (add, mul, sigmoid, tanh, exp) counts as 1.
- Bytes are the fewest an implementation must move through device memory: each input and
  parameter read once, each output written once (training adds what backward must read and write).
- Training (forward + backward) counts 3x the forward FLOPs: backward does two matmuls
  (input gradient and weight gradient) for each forward one, and roughly 2x the elementwise work.
"""

from __future__ import annotations

from dataclasses import dataclass

# Elementwise FLOPs per hidden unit per step of the GRU gates (nn.GRU's equations):
#   r = sig(xr + hr): 2    z = sig(xz + hz): 2    n = tanh(xn + r * (hn + b_hn)): 4
#   h' = (1 - z) * n + z * h: 4
GRU_GATE_FLOPS = 12
# Softmax per score: max, sub, exp, sum, divide.
SOFTMAX_FLOPS = 5
TRAINING_FACTOR = 3


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def _training(forward: Cost, extra_bytes: float) -> Cost:
    return Cost(TRAINING_FACTOR * forward.flops, 2 * forward.bytes + extra_bytes)


def gru(T, B, I, H, num_layers=1, bidirectional=False, mode="inference", elem_bytes=4, tokens=None):
    """One call of a GRU stack over T steps of a batch of B (time x batch inputs of width I).

    Forward matmul FLOPs per layer and direction: 2 * T * B * 3H * (I_layer + H), where I_layer is I
    for the first layer and D * H above it. ``tokens``: the number of valid (t, b) positions when the
    batch is packed (defaults to T * B); the FLOPs scale with it.
    """
    D = 2 if bidirectional else 1
    tokens = T * B if tokens is None else tokens
    flops = 0.0
    params = 0.0
    for layer in range(num_layers):
        i_l = I if layer == 0 else D * H
        flops += D * (2 * tokens * 3 * H * (i_l + H) + GRU_GATE_FLOPS * tokens * H)
        params += D * (3 * H * (i_l + H) + 6 * H)
    act = tokens * I + tokens * D * H + 2 * num_layers * D * B * H  # x, out, h0, h_n
    fwd = Cost(flops, elem_bytes * (act + params))
    if mode == "inference":
        return fwd
    # Backward also reads the four saved gate tensors per layer and writes parameter gradients.
    saved = 4 * tokens * H * D * num_layers
    return _training(fwd, elem_bytes * (saved + params))


def gru_cell(B, I, H, mode="inference", elem_bytes=4):
    """One GRUCell step: a GRU over one time step."""
    return gru(1, B, I, H, 1, False, mode, elem_bytes)


def attention_pooling(N, T, D, A, mode="inference", elem_bytes=4):
    """score_t = u . tanh(W h_t + b); softmax over t; context = sum_t w_t h_t. h (N, T, D)."""
    flops = 2 * N * T * D * A + 2 * N * T * A  # projection (+ bias, tanh), score dot
    flops += 2 * N * T * A  # bias add, tanh
    flops += SOFTMAX_FLOPS * N * T + 2 * N * T * D  # softmax, weighted sum
    fwd = Cost(flops, elem_bytes * (N * T * D + D * A + 2 * A + N * D))
    return fwd if mode == "inference" else _training(fwd, elem_bytes * (N * T * D + D * A))


def additive_attention(N, Tq, T, Dq, Dk, A, Dv=None, mode="inference", elem_bytes=4):
    """score_ij = v . tanh(W_q q_i + W_k k_j + b); softmax over j; context_i = sum_j w_ij v_j."""
    Dv = Dk if Dv is None else Dv
    flops = 2 * N * Tq * Dq * A + 2 * N * T * Dk * A  # the two projections (GEMMs)
    flops += 4 * N * Tq * T * A  # add, tanh, multiply-add with v, per (i, j, a)
    flops += SOFTMAX_FLOPS * N * Tq * T + 2 * N * Tq * T * Dv
    io = N * Tq * Dq + N * T * Dk + N * T * Dv + N * Tq * Dv + A * (Dq + Dk + 2)
    fwd = Cost(flops, elem_bytes * io)
    return fwd if mode == "inference" else _training(fwd, elem_bytes * io)


def dot_attention(N, Tq, T, Dq, Dk=None, Dv=None, method="dot", mode="inference", elem_bytes=4):
    """score_ij = q_i . k_j ("general": q_i . (W k_j + b), as (W^T q_i) . k_j); softmax; weighted sum."""
    Dk = Dq if Dk is None else Dk
    Dv = Dk if Dv is None else Dv
    flops = 2 * N * Tq * T * Dk + SOFTMAX_FLOPS * N * Tq * T + 2 * N * Tq * T * Dv
    params = 0
    if method == "general":
        flops += 2 * N * Tq * Dq * Dk
        params = Dq * Dk + Dk
    io = N * Tq * Dq + N * T * Dk + N * T * Dv + N * Tq * Dv + params
    fwd = Cost(flops, elem_bytes * io)
    return fwd if mode == "inference" else _training(fwd, elem_bytes * io)
