"""FLOP and byte counts of the attention ops, each counted once, under the conventions of
fastgru.bench.flops (multiply-add = 2, elementwise = 1, training = 3x the forward FLOPs).

Heads split the score features and the value columns, so they change only the softmax count
(one softmax per head); pooling hops each score, normalise and pool on their own."""

from __future__ import annotations

from fastgru.bench.flops import Cost, training_cost

# Softmax per score: max, sub, exp, sum, divide.
SOFTMAX_FLOPS = 5


def attention_pooling(N, T, D, A, mode="inference", elem_bytes=4, hops=1):
    """score_rt = u_r . tanh(W h_t + b) for each of ``hops`` context vectors u_r; softmax over t;
    pooled_r = sum_t w_rt h_t. h (N, T, D)."""
    flops = 2 * N * T * D * A + 2 * N * T * A * hops  # projection, score dots
    flops += 2 * N * T * A  # bias add, tanh
    flops += SOFTMAX_FLOPS * N * T * hops + 2 * N * T * D * hops  # softmax, weighted sum
    fwd = Cost(flops, elem_bytes * (N * T * D + D * A + A + hops * A + N * hops * D))
    return fwd if mode == "inference" else training_cost(fwd, elem_bytes * (N * T * D + D * A))


def additive_attention(N, Tq, T, Dq, Dk, A, Dv=None, mode="inference", elem_bytes=4, heads=1):
    """score_ij = v . tanh(W_q q_i + W_k k_j + b); softmax over j; context_i = sum_j w_ij v_j.
    With ``heads`` the A features and the Dv value columns are split among the heads."""
    Dv = Dk if Dv is None else Dv
    flops = 2 * N * Tq * Dq * A + 2 * N * T * Dk * A  # the two projections (GEMMs)
    flops += 4 * N * Tq * T * A  # add, tanh, multiply-add with v, per (i, j, a)
    flops += SOFTMAX_FLOPS * N * Tq * T * heads + 2 * N * Tq * T * Dv
    io = N * Tq * Dq + N * T * Dk + N * T * Dv + N * Tq * Dv + A * (Dq + Dk + 2)
    fwd = Cost(flops, elem_bytes * io)
    return fwd if mode == "inference" else training_cost(fwd, elem_bytes * io)


def dot_attention(N, Tq, T, Dq, Dk=None, Dv=None, method="dot", mode="inference", elem_bytes=4, heads=1):
    """score_ij = q_i . k_j ("general": q_i . (W k_j + b), as (W^T q_i) . k_j); softmax; weighted sum.

    "projected" is nn.MultiheadAttention's formulation: q, k and v each projected to Dq features
    (with bias), ``heads`` heads splitting them, and an output projection Dq -> Dq."""
    Dk = Dq if Dk is None else Dk
    Dv = Dk if Dv is None else Dv
    params = 0
    if method == "projected":
        E = Dq
        flops = 2 * N * Tq * Dq * E + 2 * N * T * (Dk + Dv) * E + 2 * N * Tq * E * E  # q, k, v, out projections
        flops += 2 * N * Tq * T * E + SOFTMAX_FLOPS * N * Tq * T * heads + 2 * N * Tq * T * E
        params = E * (Dq + Dk + Dv + E) + 4 * E
        io = N * Tq * Dq + N * T * Dk + N * T * Dv + N * Tq * E + params
    else:
        flops = 2 * N * Tq * T * Dk + SOFTMAX_FLOPS * N * Tq * T * heads + 2 * N * Tq * T * Dv
        if method == "general":
            flops += 2 * N * Tq * Dq * Dk
            params = Dq * Dk + Dk
        io = N * Tq * Dq + N * T * Dk + N * T * Dv + N * Tq * Dv + params
    fwd = Cost(flops, elem_bytes * io)
    return fwd if mode == "inference" else training_cost(fwd, elem_bytes * io)
