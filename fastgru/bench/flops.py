"""FLOP and byte counts of a GRU or LSTM call, and the conventions every count follows (the TFLOP/s and
GB/s columns of the tables; the attention counts live in the repository's bench/ folder).

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
# The LSTM's (nn.LSTM's equations), per hidden unit per step:
#   a = gx + gh for i, f, g, o: 4    sig(a_i), sig(a_f), tanh(a_g), sig(a_o): 4
#   c' = f * c + i * g: 3    m = o * tanh(c'): 2
LSTM_GATE_FLOPS = 13
TRAINING_FACTOR = 3


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def training_cost(forward: Cost, extra_bytes: float) -> Cost:
    """Forward + backward: TRAINING_FACTOR x the forward FLOPs, the forward's bytes twice plus ``extra_bytes``."""
    return Cost(TRAINING_FACTOR * forward.flops, 2 * forward.bytes + extra_bytes)


def gru(T, B, I, H, num_layers=1, bidirectional=False, mode="inference", elem_bytes=4, tokens=None):
    """One call of a GRU stack over T steps of a batch of B (time x batch inputs of width I).
    A GRUCell step is ``gru(1, B, I, H)``.

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
    return training_cost(fwd, elem_bytes * (saved + params))


def lstm(T, B, I, H, num_layers=1, bidirectional=False, mode="inference", elem_bytes=4, tokens=None, proj_size=0):
    """One call of an LSTM stack (nn.LSTM's arguments), the GRU's conventions. The state h has
    R = proj_size (when > 0) or H features; per layer and direction the forward's matmuls are
    2 * tokens * 4H * (I_layer + R), plus 2 * tokens * R * H for the projection, I_layer = I for
    the first layer and D * R above it. An LSTMCell step is ``lstm(1, B, I, H)``."""
    D = 2 if bidirectional else 1
    R = proj_size or H
    tokens = T * B if tokens is None else tokens
    flops = params = 0.0
    for layer in range(num_layers):
        i_l = I if layer == 0 else D * R
        flops += D * (2 * tokens * 4 * H * (i_l + R) + 2 * tokens * R * H * bool(proj_size) + LSTM_GATE_FLOPS * tokens * H)
        params += D * (4 * H * (i_l + R) + 8 * H + R * H * bool(proj_size))
    act = tokens * I + tokens * D * R + 2 * num_layers * D * B * (R + H)  # x, out, (h0, c0), (h_n, c_n)
    fwd = Cost(flops, elem_bytes * (act + params))
    if mode == "inference":
        return fwd
    # Backward also reads what the forward saved: the four gates and c_{t-1}, c_t per unit (and m with proj).
    saved = (6 + bool(proj_size)) * tokens * H * D * num_layers
    return training_cost(fwd, elem_bytes * (saved + params))
