"""Pure-PyTorch statement of every op's math: the ground truth for tests and the readable spec.

Nothing here is fast. Each function says exactly what the matching kernel computes; the
tests hold the kernels to these functions (in float64) and to torch.nn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# GRU: exactly nn.GRU's equations, gate order (r, z, n).
#   r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
#   z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
#   n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))        reset_after=True (nn.GRU, cuDNN)
#   n  = tanh(W_in x + b_in + W_hn (r * h) + b_hn)        reset_after=False (Cho et al. 2014)
#   h' = (1 - z) * n + z * h
# reset_after=False is the original formulation: the reset gate scales the state before the
# recurrent matmul (Keras' GRU(reset_after=False), ONNX's GRU with linear_before_reset=0). Same
# parameters, names and shapes as nn.GRU; all of b_hh then sits outside the reset gate.
# ----------------------------------------------------------------------------------------------


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """One GRU step. x (B, I), h (B, H), w_ih (3H, I), w_hh (3H, H) -> h' (B, H)."""
    gx = F.linear(x, w_ih, b_ih)
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = b_hh.chunk(3) if b_hh is not None else (None, None, None)
    r = torch.sigmoid(x_r + F.linear(h, w_hr, b_hr))
    z = torch.sigmoid(x_z + F.linear(h, w_hz, b_hz))
    if reset_after:
        n = torch.tanh(x_n + r * F.linear(h, w_hn, b_hn))
    else:
        n = torch.tanh(x_n + F.linear(r * h, w_hn, b_hn))
    return (1 - z) * n + z * h


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, reset_after=True):
    """One direction of one layer over a time-major sequence.

    x (T, B, I), h0 (B, H), lengths (B,) or None -> (out (T, B, H), h_n (B, H)).
    Row b runs over its first ``lengths[b]`` steps (in reverse order when ``reverse``);
    past its length its state is carried unchanged and its output is zero (nn.GRU's
    PackedSequence semantics).
    """
    def step(xt, h):
        return (gru_cell(xt, h, w_ih, w_hh, b_ih, b_hh, reset_after),)

    out, (h,) = run_sequence(step, x, (h0,), lengths, reverse)
    return out, h


def run_sequence(step, x, state, lengths=None, reverse=False):
    """A cell run over a time-major sequence, the loop gru_layer and lstm_layer share.

    ``step(x_t, *state) -> new state``: a tuple of (B, .) tensors whose first is the step's
    output (h). x (T, B, I), state the tuple entering step 0, lengths (B,) or None ->
    (out (T, B, features of h), final state). Row b runs over its first ``lengths[b]`` steps (in
    reverse order when ``reverse``); past its length its state is carried unchanged and its
    output is zero (PackedSequence semantics).
    """
    T, B = x.shape[0], x.shape[1]
    rows = torch.arange(B, device=x.device)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = lengths.to(device=x.device, dtype=torch.long)
    out = x.new_zeros(T, B, state[0].shape[-1])
    for s in range(T):
        valid = s < lengths
        t = (lengths - 1 - s).clamp(min=0) if reverse else torch.full_like(lengths, s)
        new = step(x[t, rows], *state)
        out = out.index_put((t[valid], rows[valid]), new[0][valid])
        state = tuple(torch.where(valid.unsqueeze(1), n, old) for n, old in zip(new, state))
    return out, state


def gru(x, h0, weights, num_layers, bidirectional=False, lengths=None, dropout=0.0, training=False, reset_after=True):
    """A stack of GRU layers over time-major x (T, B, I).

    weights: list of (w_ih, w_hh, b_ih, b_hh) ordered layer by layer, forward direction first
    (nn.GRU's order; biases may be None). h0 (L * D, B, H). Dropout with probability
    ``dropout`` is applied to every layer's output except the last, in training only.
    ``reset_after`` picks the candidate's formulation (see the equations above).
    Returns (out (T, B, D * H), h_n (L * D, B, H)).
    """
    def direction(inp, h, w, reverse):
        return gru_layer(inp, h, *w, lengths, reverse=reverse, reset_after=reset_after)

    return stack_layers(x, h0, weights, num_layers, bidirectional, dropout, training, direction)


def stack_layers(x, h0, weights, num_layers, bidirectional, dropout, training, direction):
    """nn.GRU's (and nn.LSTM's) stacking around ``direction(layer_input, state0_k, weights_k,
    reverse) -> (out, state_n)``: the directions' outputs concatenated, dropout between layers
    (training only), the final states stacked layer by layer, forward direction first. A state is
    one tensor (h, the GRU) or a tuple of them ((h, c), the LSTM; ``h0`` then a tuple of (L*D, B, .)
    tensors, and the result a tuple of stacks)."""
    D = 2 if bidirectional else 1
    layer_in = x
    states = []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            state0 = tuple(h[k] for h in h0) if isinstance(h0, tuple) else h0[k]
            out, state = direction(layer_in, state0, weights[k], d == 1)
            outs.append(out)
            states.append(state)
        layer_in = torch.cat(outs, dim=-1) if D == 2 else outs[0]
        if dropout > 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, p=dropout, training=True)
    if isinstance(h0, tuple):
        return layer_in, tuple(torch.stack(parts) for parts in zip(*states))
    return layer_in, torch.stack(states)


# ----------------------------------------------------------------------------------------------
# LSTM: exactly nn.LSTM's equations, gate order (i, f, g, o).
#   i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
#   g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
#   c' = f * c + i * g
#   h' = o * tanh(c')                  (proj_size > 0: h' = W_hr (o * tanh(c')), of size proj_size)
# The recurrent state h has R = proj_size (or H) features, the cell state c has H. Every bias
# sits outside a product with a gate, so b_ih + b_hh act as one bias.
# ----------------------------------------------------------------------------------------------


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """One LSTM step. x (B, I), h (B, R), c (B, H), w_ih (4H, I), w_hh (4H, R), w_hr (R, H) or
    None (then R = H) -> (h' (B, R), c' (B, H))."""
    a_i, a_f, a_g, a_o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c_new = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
    h_new = torch.sigmoid(a_o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)
    return h_new, c_new


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, lengths=None, reverse=False):
    """One direction of one LSTM layer over a time-major sequence, with gru_layer's semantics
    for ``lengths`` and ``reverse`` (past its length a row carries h and c unchanged and outputs
    zero). x (T, B, I), h0 (B, R), c0 (B, H) -> (out (T, B, R), (h_n (B, R), c_n (B, H)))."""
    def step(xt, h, c):
        return lstm_cell(xt, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)

    return run_sequence(step, x, (h0, c0), lengths, reverse)


def lstm(x, hx, weights, num_layers, bidirectional=False, lengths=None, dropout=0.0, training=False):
    """A stack of LSTM layers over time-major x (T, B, I), nn.LSTM's stacking.

    hx: (h0 (L * D, B, R), c0 (L * D, B, H)). weights: one (w_ih, w_hh, b_ih, b_hh, w_hr) per layer
    and direction, forward direction first (nn.LSTM's parameter order; biases and w_hr may be
    None). Returns (out (T, B, D * R), (h_n (L * D, B, R), c_n (L * D, B, H))).
    """
    def direction(inp, state, w, reverse):
        return lstm_layer(inp, *state, *w, lengths, reverse=reverse)

    return stack_layers(x, tuple(hx), weights, num_layers, bidirectional, dropout, training, direction)


# ----------------------------------------------------------------------------------------------
# Attention (docs/architecture.md): the naive formulation a user would write. Batch first;
# query (N, Tq, Dq), keys (N, T, Dk), values (N, T, D). Masks: ``lengths`` (N,) -- key t of
# row n takes part when t < lengths[n] -- and/or ``key_padding_mask`` (N, T) bool, True =
# ignore (nn.MultiheadAttention's convention). A fully masked row gives zero weights and a
# zero context. Returns (context (N, Tq, D), weights (N, Tq, T)).
#
# Heads (``num_heads`` = H): as nn.MultiheadAttention splits its projected dims, head h scores
# with features [h*F/H, (h+1)*F/H) of the (projected) queries and keys -- and of the additive
# score vector v -- and attends over value columns [h*D/H, (h+1)*D/H); the context is the heads'
# contexts concatenated, (N, Tq, D). Weights are then per head, (N, H, Tq, T).
#
# Dropout (``dropout_p``) acts on the weights after the masked softmax, as in
# nn.MultiheadAttention: a dropped weight becomes 0, a kept one is scaled by 1 / (1 - p), and the
# weights returned are those after dropout. ``keep`` (bool, the shape of the returned weights,
# True = kept) replays a given draw instead of drawing one with torch's RNG -- e.g. the kernels'
# own draw, read off the weights they return (a kept weight is nonzero).
# ----------------------------------------------------------------------------------------------


def attention_ignore_mask(lengths, key_padding_mask, N, T, device):
    """The keys to ignore as one (N, T) bool tensor (True = ignore), or None for no mask."""
    ignore = None
    if lengths is not None:
        ignore = torch.arange(T, device=device)[None, :] >= lengths.to(device).reshape(N, 1)
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=device, dtype=torch.bool)
        ignore = kpm if ignore is None else ignore | kpm
    return ignore


def masked_softmax(scores, ignore):
    """Softmax over the last dim of scores (N, ..., T) -- e.g. (N, Tq, T) or (N, H, Tq, T) --
    ignoring keys where ignore (N, T) is True; fully masked rows give zeros, with zero (not NaN)
    gradients."""
    if ignore is None:
        return torch.softmax(scores, dim=-1)
    N, T = ignore.shape
    ignore = ignore.reshape(N, *([1] * (scores.dim() - 2)), T).expand_as(scores)
    empty = ignore.all(dim=-1, keepdim=True)
    scores = scores.masked_fill(ignore & ~empty, float("-inf")).masked_fill(empty, 0.0)
    return torch.softmax(scores, dim=-1).masked_fill(ignore, 0.0)


def attention_dropout(weights, p, keep=None):
    """Dropout on attention weights: dropped entries 0, kept ones scaled by 1 / (1 - p).
    ``keep`` (bool, broadcastable to weights, True = kept) replays a given draw; without it
    torch's F.dropout draws one (nothing happens for p = 0)."""
    if keep is not None:
        return weights.masked_fill(~keep, 0.0) / (1.0 - p)
    if p == 0:
        return weights
    return F.dropout(weights, p, training=True)


def split_heads(x, heads):
    """(N, T, F) -> (N, H, T, F / H): head h takes features [h*F/H, (h+1)*F/H)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x):
    """(N, H, T, d) -> (N, T, H * d): the heads' features concatenated (inverse of split_heads)."""
    return x.transpose(1, 2).flatten(2)


def _attend(scores, values, lengths, key_padding_mask, dropout_p, keep):
    """Masked softmax of scores (N, H, Tq, T), dropout, and the heads' contexts concatenated.
    Returns (context (N, Tq, D), weights (N, H, Tq, T)); ``keep`` may have any shape with the
    weights' elements in order (the weights a caller is returned)."""
    N, T = values.shape[0], values.shape[1]
    ignore = attention_ignore_mask(lengths, key_padding_mask, N, T, values.device)
    weights = masked_softmax(scores, ignore)
    weights = attention_dropout(weights, dropout_p, None if keep is None else keep.reshape(weights.shape))
    return merge_heads(weights @ split_heads(values, scores.shape[1])), weights


def _returned(out, weights):
    """One head's weights lose the head axis: (N, Tq, T); several keep it: (N, H, Tq, T)."""
    return out, (weights[:, 0] if weights.shape[1] == 1 else weights)


def additive_attention(query, keys, values, w_q, w_k, v, b_q=None, b_k=None, lengths=None, key_padding_mask=None,
                       *, num_heads=1, dropout_p=0.0, keep=None):
    """score_ij = v . tanh(W_q q_i + b_q + W_k k_j + b_k), per head over its slice of the A
    projected features and of v; materialises the (N, H, Tq, T, A/H) tensor."""
    qp = split_heads(F.linear(query, w_q, b_q), num_heads)  # (N, H, Tq, A/H)
    kp = split_heads(F.linear(keys, w_k, b_k), num_heads)  # (N, H, T, A/H)
    hidden = torch.tanh(qp[:, :, :, None, :] + kp[:, :, None, :, :])  # (N, H, Tq, T, A/H)
    scores = torch.einsum("nhqta,ha->nhqt", hidden, v.reshape(num_heads, -1))
    return _returned(*_attend(scores, values, lengths, key_padding_mask, dropout_p, keep))


def attention_pooling(h, weight, bias, context, lengths=None, key_padding_mask=None, *, dropout_p=0.0, keep=None):
    """score_jt = u_j . tanh(W h_t + b), pooled_j = sum_t a_jt h_t. context u (A,): one hop,
    h (N, T, D) -> (pooled (N, D), weights (N, T)); context (r, A): r hops (Lin et al. 2017,
    A = softmax(W_s2 tanh(W_s1 H^T))) -> (pooled (N, r, D), weights (N, r, T))."""
    hops = context.reshape(-1, context.shape[-1])  # (r, A)
    scores = (torch.tanh(F.linear(h, weight, bias)) @ hops.t()).transpose(1, 2)  # (N, r, T)
    out, weights = _attend(scores[:, None], h, lengths, key_padding_mask, dropout_p, keep)
    if context.dim() == 1:
        return out[:, 0], weights[:, 0, 0]
    return out, weights[:, 0]


def dot_attention(query, keys, values, weight=None, scale=1.0, lengths=None, key_padding_mask=None,
                  *, num_heads=1, dropout_p=0.0, keep=None):
    """score_ij = scale * q_i . k_j ("dot"), or scale * q_i . (W k_j) with W = weight (Dq, Dk)
    ("general", Luong; computed as (W^T q_i) . k_j); per head over its slice of the Dk features."""
    if weight is not None:
        query = query @ weight  # (N, Tq, Dk)
    scores = scale * (split_heads(query, num_heads) @ split_heads(keys, num_heads).transpose(-1, -2))
    return _returned(*_attend(scores, values, lengths, key_padding_mask, dropout_p, keep))


def attention_penalty(weights):
    """||A A^T - I||_F^2 for hop weights A (N, r, T), averaged over the batch (Lin et al. 2017)."""
    gram = torch.bmm(weights, weights.transpose(1, 2))
    eye = torch.eye(weights.shape[1], dtype=weights.dtype, device=weights.device)
    return (gram - eye).square().sum(dim=(1, 2)).mean()


# ----------------------------------------------------------------------------------------------
# Attention GRU decoder (sequence to sequence): at each output step the decoder's state queries
# the encoder outputs ``keys`` (N, T_in, K), and the context c joins a GRU step. Batch first:
# inputs (N, T_out, I), states (L, N, H); a stack's query is its top layer's state, and the
# context joins layer 0's input as [x_t, c] (w_ih of layer 0 is (3H, I + K)).
#   "additive" (Bahdanau et al. 2015; the PyTorch seq2seq tutorial's AttnDecoderRNN):
#       c_t = attend(h_{t-1}),  score_j = v . tanh(W_q h_{t-1} + W_k k_j + b_k)
#       h_t = GRU([x_t, c_t], h_{t-1})
#   "dot" / "general" (Luong et al. 2015), the attention on the new state:
#       h_t = GRU(x_t, h_{t-1})   or, with input feeding, GRU([x_t, c_{t-1}], h_{t-1}), c_{-1} = 0
#       c_t = attend(h_t),        score_j = h_t . k_j ("dot", K = H) or h_t . (W_a k_j) ("general")
#   attend: weights = softmax_j(score) over the unmasked keys, c = sum_j weights_j k_j
#   (a fully masked row: zero weights, zero context).
# Returns (outputs h_t (N, T_out, H), contexts c_t (N, T_out, K), weights (N, T_out, T_in), h_n).
# ----------------------------------------------------------------------------------------------

DECODER_SCORES = ("additive", "dot", "general")


def decoder_keys(score, keys, key_weight=None, key_bias=None):
    """The keys as the score sees them, projected once per sequence: W_k k + b_k (additive),
    W_a k (general), k itself (dot)."""
    return keys if score == "dot" else F.linear(keys, key_weight, key_bias)


def decoder_attention(score, keys, projected_keys, query_weight=None, v=None, lengths=None, key_padding_mask=None):
    """``attend(state (N, H)) -> (context (N, K), weights (N, T_in))`` of one decoder step."""
    N, T = keys.shape[0], keys.shape[1]
    ignore = attention_ignore_mask(lengths, key_padding_mask, N, T, keys.device)

    def attend(state):
        if score == "additive":
            scores = torch.tanh(F.linear(state, query_weight)[:, None, :] + projected_keys) @ v
        else:
            scores = (projected_keys @ state[:, :, None])[..., 0]
        weights = masked_softmax(scores, ignore)
        return (weights[:, None, :] @ keys)[:, 0], weights

    return attend


def decoder_step(x, h, context, layers, score, attend, input_feeding=False, cell=gru_cell):
    """One decoder step: x (N, I), h (L, N, H), context c_{t-1} (N, K) ->
    (h_t (L, N, H), c_t (N, K), weights (N, T_in)). ``layers``: (w_ih, w_hh, b_ih, b_hh) per layer."""
    weights = None
    if score == "additive":
        context, weights = attend(h[-1])
    if score == "additive" or input_feeding:
        x = torch.cat([x, context], dim=-1)
    states = []
    for layer, w in enumerate(layers):
        x = cell(x, h[layer], *w)
        states.append(x)
    h = torch.stack(states)
    if score != "additive":
        context, weights = attend(h[-1])
    return h, context, weights


def attention_decoder(inputs, keys, h0, layers, score, *, query_weight=None, key_weight=None, key_bias=None, v=None,
                      lengths=None, key_padding_mask=None, input_feeding=False, cell=gru_cell, attend=None):
    """Teacher-forced decoding over inputs (N, T_out, I), one decoder_step at a time (equations
    above). Returns (outputs (N, T_out, H), contexts (N, T_out, K), weights (N, T_out, T_in), h_n (L, N, H)).
    ``cell`` and ``attend`` replace the step's GRU cell and attention with other implementations
    of the same math (an ``attend`` that returns no weights gives weights None)."""
    if attend is None:
        attend = decoder_attention(score, keys, decoder_keys(score, keys, key_weight, key_bias), query_weight, v,
                                   lengths, key_padding_mask)
    h, context = h0, keys.new_zeros(keys.shape[0], keys.shape[-1])
    outputs, contexts, weights = [], [], []
    for t in range(inputs.shape[1]):
        h, context, w = decoder_step(inputs[:, t], h, context, layers, score, attend, input_feeding, cell)
        outputs.append(h[-1])
        contexts.append(context)
        weights.append(w)
    stacked = None if weights[0] is None else torch.stack(weights, 1)
    return torch.stack(outputs, 1), torch.stack(contexts, 1), stacked, h
