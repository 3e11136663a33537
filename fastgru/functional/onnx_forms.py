"""The ONNX export forms of fastgru.GRU and fastgru.LSTM: what a module runs while
``torch.onnx.export`` traces it, each layer one standard ONNX ``GRU`` or ``LSTM`` node.

They live in the functional layer, below nn, because the modules call them (``_export``) and a
module may only call down; they read the module's attributes and parameters by nn's names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) and import nothing above them. Converting weights
to and from ONNX files (``fastgru.from_onnx`` / ``to_onnx``) is interop's, above nn.

``torch.onnx.export`` cannot see through fastgru's kernels (Triton launches, custom ops). While
an export runs, ``fastgru.GRU._run`` hands its work to :func:`gru_onnx_forward`, and
``fastgru.LSTM`` to :func:`lstm_onnx_forward`, which write the module's recurrence as ONNX's own
GRU / LSTM operator, so any ONNX runtime runs it with its native recurrent kernel instead of an
unrolled loop.

The graph, per layer ``l`` (time-major; ``D`` = 1 or 2 directions, ``H`` = hidden_size)::

    X_l (T, B, I_l) --GRU(hidden_size=H, direction=forward|bidirectional,
                          linear_before_reset=1 (reset_after=True, nn.GRU's formula) or
                                              0 (reset_after=False))--> Y (T, D, B, H), Y_h (D, B, H)
    X_l (T, B, I_l) --LSTM(hidden_size=H, direction=forward|bidirectional)
                                               --> Y (T, D, B, H), Y_h (D, B, H), Y_c (D, B, H)
    X_{l+1} = Transpose(Y, (0, 2, 1, 3)) reshaped to (T, B, D*H)

with the node's inputs

- ``W`` (D, GH, I_l) and ``R`` (D, GH, H) (G = 3 gates for the GRU, 4 for the LSTM):
  weight_ih / weight_hh of each direction with the gate blocks reordered from fastgru's
  (r, z, n) to ONNX's (z, r, h), or from (i, f, g, o) to ONNX's (i, o, f, c);
- ``B`` (D, 2GH): [bias_ih, bias_hh] of each direction, reordered the same way (left out for
  ``bias=False``, which ONNX reads as zeros);
- ``sequence_lens`` (B,) int32: the ``lengths`` argument cast, when given (left out otherwise);
- ``initial_h`` (D, B, H): the layer's slice of ``hx`` (of ``h0`` for the LSTM; zeros when the
  caller passed none), and for the LSTM ``initial_c`` (D, B, H), the layer's slice of ``c0``.
  The LSTM's peephole input ``P`` is left out (nn.LSTM has none).

The weights are computed from the parameters by gathers, concats and stacks, which the dynamo
exporter's default optimisation (``optimize=True``) and the TorchScript exporter's constant
folding turn into ready initializers. ``h_n`` is the layers' ``Y_h`` concatenated (L*D, B, H),
the LSTM's ``c_n`` their ``Y_c``. With ``lengths``, the last layer's output is additionally
multiplied by the mask ``t < lengths[b]``, so steps past a row's length are zero on any runtime
(ONNX leaves those values to the runtime; onnxruntime happens to zero them too). Dropout between
layers only acts in training and is not exported; a module in training mode with active dropout
is refused, and so is an LSTM with ``proj_size > 0`` (ONNX's LSTM has no projection).

Two exporters are covered:

- ``torch.onnx.export(..., dynamo=True)`` (the default): the node is emitted with
  ``torch.onnx.ops.symbolic_multi_out``; batch and time axes may be dynamic
  (``dynamic_shapes``).
- ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter, deprecated by PyTorch):
  the node is emitted by the ``symbolic`` of a ``torch.autograd.Function``; ``dynamic_axes`` work.

``lengths`` values are not checked in the graph (they are unknown while tracing); onnxruntime
itself rejects values outside [0, T]. Every other fastgru op takes its plain PyTorch path while
exporting (backend.backend_for), so GRUAttention exports whole.

Outside an export :func:`gru_onnx_forward` and :func:`lstm_onnx_forward` must not run: the
placeholders produced while tracing hold zeros, not the recurrence's result.
"""

from __future__ import annotations

import torch

from .gate_order import lstm_to_onnx, swap_rz

__all__ = ["gru_onnx_forward", "gru_onnx_weights", "lstm_onnx_forward", "lstm_onnx_weights", "GRU_ONNX_DTYPES"]

# The dtypes ONNX's GRU and LSTM take (onnxruntime's CPU kernels run float32 only).
GRU_ONNX_DTYPES = (torch.float16, torch.float32, torch.float64)


def _node_weights(module, layer: int, to_onnx):
    """(W (D, GH, I), R (D, GH, H), B (D, 2GH) or None) of ``layer``: each direction's
    weight_ih, weight_hh and [bias_ih, bias_hh], gate blocks in ONNX's order (``to_onnx``: a gather,
    which the exporters fold into a ready initializer), forward
    direction first. Differentiable torch ops on the parameters (tracing records them)."""
    suffixes = ("", "_reverse") if module.bidirectional else ("",)

    def param(kind, sfx):
        return to_onnx(getattr(module, f"{kind}_l{layer}{sfx}"))

    W = torch.stack([param("weight_ih", sfx) for sfx in suffixes])
    R = torch.stack([param("weight_hh", sfx) for sfx in suffixes])
    if not module.bias:
        return W, R, None
    return W, R, torch.stack([torch.cat([param("bias_ih", sfx), param("bias_hh", sfx)]) for sfx in suffixes])


def gru_onnx_weights(module, layer: int):
    """ONNX GRU inputs (W (D, 3H, I), R (D, 3H, H), B (D, 6H) or None) for ``layer`` of a
    fastgru.GRU (or torch.nn.GRU): gate blocks in ONNX's (z, r, h) order, forward direction
    first. Differentiable torch ops on the parameters (tracing records them)."""
    return _node_weights(module, layer, swap_rz)


class _LegacyNode(torch.autograd.Function):
    """An ONNX GRU or LSTM node for the TorchScript exporter (``dynamo=False``): traced as one
    opaque op whose ``symbolic`` writes the node. Its forward only gives the outputs' shapes."""

    @staticmethod
    def forward(ctx, op, x, W, R, B, seq_lens, h0, c0, hidden_size, direction, linear_before_reset):
        T, batch, D = x.shape[0], x.shape[1], W.shape[0]
        outs = (x.new_zeros(T, D, batch, hidden_size), x.new_zeros(D, batch, hidden_size))
        return (*outs, x.new_zeros(D, batch, hidden_size)) if op == "LSTM" else outs

    @staticmethod
    def symbolic(g, op, x, W, R, B, seq_lens, h0, c0, hidden_size, direction, linear_before_reset):
        def optional(value):
            if value is not None:
                return value
            # A missing optional input (written as "" in the ONNX node).
            missing = g.op("prim::Constant")
            missing.setType(torch._C.OptionalType.ofTensor())
            return missing

        inputs = [x, W, R, optional(B), optional(seq_lens), h0]
        attrs = {"hidden_size_i": hidden_size, "direction_s": direction}
        if op == "LSTM":
            inputs.append(c0)
        else:
            attrs["linear_before_reset_i"] = linear_before_reset
        return g.op(op, *inputs, outputs=3 if op == "LSTM" else 2, **attrs)


def _node(op, x, W, R, B, seq_lens, h0, c0, hidden_size: int, direction: str, linear_before_reset):
    """One ONNX ``op`` ("GRU" or "LSTM") node, layout 0 (time-major): returns (Y (T, D, B, H),
    Y_h (D, B, H)) and for the LSTM also Y_c (D, B, H). ``c0`` is the LSTM's initial_c (None for
    the GRU), ``linear_before_reset`` the GRU's attribute (None for the LSTM)."""
    if torch.jit.is_tracing():  # the TorchScript exporter traces with torch.jit
        return _LegacyNode.apply(op, x, W, R, B, seq_lens, h0, c0, hidden_size, direction, linear_before_reset)
    symbolic_multi_out = getattr(getattr(torch.onnx, "ops", None), "symbolic_multi_out", None)
    if symbolic_multi_out is None:
        raise RuntimeError(
            f"fastgru: exporting {op} with torch.onnx.export(dynamo=True) needs torch.onnx.ops.symbolic_multi_out "
            f"(torch >= 2.8); this is torch {torch.__version__}. Upgrade torch or export with dynamo=False."
        )
    T, batch, D = x.shape[0], x.shape[1], W.shape[0]
    inputs = [x, W, R, B, seq_lens, h0]
    attrs = {"hidden_size": hidden_size, "direction": direction}
    shapes = [[T, D, batch, hidden_size], [D, batch, hidden_size]]
    if op == "LSTM":
        inputs.append(c0)
        shapes.append([D, batch, hidden_size])
    else:
        attrs["linear_before_reset"] = linear_before_reset
    return tuple(symbolic_multi_out(op, inputs, attrs, dtypes=[x.dtype] * len(shapes), shapes=shapes))


def _check(module, input, states, lengths, kind: str):
    """What can be checked without the values (they are symbolic while exporting). ``states``:
    (name, tensor, last dim) of each initial state (hx; or h0 and c0)."""
    if not isinstance(input, torch.Tensor) or input.dim() != 3:
        raise ValueError(f"fastgru ONNX export: the {kind}'s input must be a batched 3-D tensor")
    if input.dtype not in GRU_ONNX_DTYPES:
        raise TypeError(
            f"fastgru ONNX export: ONNX's {kind} takes {GRU_ONNX_DTYPES}, got input of dtype {input.dtype}"
        )
    weight = module.weight_ih_l0
    if input.dtype != weight.dtype or any(t.dtype != input.dtype for _, t, _ in states):
        dtypes = ", ".join(f"{name} ({t.dtype})" for name, t, _ in states)
        raise TypeError(
            f"fastgru ONNX export: input ({input.dtype}), {dtypes} and weights ({weight.dtype}) need one dtype"
        )
    if input.shape[-1] != module.input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {module.input_size}, got {input.shape[-1]}")
    D = 2 if module.bidirectional else 1
    batch = input.shape[0] if module.batch_first else input.shape[1]
    for name, t, size in states:
        if t.dim() != 3 or t.shape[0] != module.num_layers * D or t.shape[2] != size:
            what = "hidden" if name in ("hx", "h0") else "cell"
            raise RuntimeError(f"Expected {what} size ({module.num_layers * D}, {batch}, {size}), got {list(t.shape)}")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1:
            raise ValueError("fastgru ONNX export: lengths must be a 1-D integer tensor (one length per batch row)")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if module.training and module.dropout > 0 and module.num_layers > 1:
        raise RuntimeError(
            f"fastgru ONNX export: the {kind} is in training mode with dropout between layers, which ONNX's {kind} "
            "cannot express; call model.eval() before torch.onnx.export"
        )


def _layers(module, input, h0, c0, lengths, op, weights, linear_before_reset=None):
    """The layer loop both families share: one ``op`` node per layer, each fed the previous
    one's Y as (T, B, D*H). Returns (output laid out like input, zero past each row's length;
    the per-layer Y_h concatenated; for the LSTM the Y_c concatenated, else None)."""
    x = input.transpose(0, 1) if module.batch_first else input
    T, batch = x.shape[0], x.shape[1]
    D = 2 if module.bidirectional else 1
    H = module.hidden_size
    direction = "bidirectional" if D == 2 else "forward"
    seq_lens = None if lengths is None else lengths.to(device=x.device, dtype=torch.int32)
    layer_in, h_n, c_n = x, [], []
    for layer in range(module.num_layers):
        W, R, B = weights(module, layer)
        rows = slice(layer * D, (layer + 1) * D)
        outs = _node(op, layer_in, W, R, B, seq_lens, h0[rows], None if c0 is None else c0[rows], H, direction,
                     linear_before_reset)
        layer_in = outs[0].permute(0, 2, 1, 3).reshape(T, batch, D * H)
        h_n.append(outs[1])
        if c0 is not None:
            c_n.append(outs[2])
    out = layer_in
    if lengths is not None:
        steps = torch.arange(T, device=x.device)
        valid = steps[:, None] < lengths.to(device=x.device)[None, :]  # (T, B)
        out = out * valid[:, :, None].to(out.dtype)
    if module.batch_first:
        out = out.transpose(0, 1)

    def cat(states):
        return torch.cat(states) if len(states) > 1 else states[0]

    return out, cat(h_n), cat(c_n) if c_n else None


def gru_onnx_forward(module, input: torch.Tensor, hx: torch.Tensor, lengths: torch.Tensor | None = None):
    """fastgru.GRU's batched forward written as ONNX GRU nodes (one per layer), for
    ``torch.onnx.export``; the module description says which graph comes out.

    input (T, B, I), or (B, T, I) with ``module.batch_first``; hx (L*D, B, H); lengths None or
    (B,) integers in [1, T] (each row runs over its first lengths[b] steps, its reverse
    direction starting at its last one; the values cannot be checked while exporting).
    Returns (output laid out like input with D*H features, zero past each row's length;
    h_n (L*D, B, H)), as ``module(input, hx, lengths=lengths)`` does.
    """
    _check(module, input, [("hx", hx, module.hidden_size)], lengths, "GRU")
    # reset_after=True is nn.GRU's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): ONNX's
    # linear_before_reset=1. reset_after=False applies r before the matmul: linear_before_reset=0.
    linear_before_reset = 1 if getattr(module, "reset_after", True) else 0
    out, h_n, _ = _layers(module, input, hx, None, lengths, "GRU", gru_onnx_weights, linear_before_reset)
    return out, h_n


def lstm_onnx_weights(module, layer: int):
    """ONNX LSTM inputs (W (D, 4H, I), R (D, 4H, H), B (D, 8H) or None) for ``layer`` of a
    fastgru.LSTM (or torch.nn.LSTM) without projection: gate blocks in ONNX's (i, o, f, c)
    order, forward direction first. Differentiable torch ops on the parameters."""
    return _node_weights(module, layer, lstm_to_onnx)


def lstm_onnx_forward(module, input: torch.Tensor, hx, lengths: torch.Tensor | None = None):
    """fastgru.LSTM's batched forward written as ONNX LSTM nodes (one per layer), for
    ``torch.onnx.export``; the module description says which graph comes out.

    input (T, B, I), or (B, T, I) with ``module.batch_first``; hx = (h0 (L*D, B, H),
    c0 (L*D, B, H)) (zeros when the caller passed none); lengths None or (B,) integers in [1, T],
    as for the GRU. Returns (output laid out like input with D*H features, zero past each row's
    length; (h_n (L*D, B, H), c_n (L*D, B, H))), as ``module(input, hx, lengths=lengths)`` does.
    ``proj_size > 0`` raises RuntimeError: ONNX's LSTM has no projection.
    """
    if module.proj_size:
        raise RuntimeError(
            f"fastgru ONNX export: the LSTM has proj_size={module.proj_size}, and ONNX's LSTM has no projection "
            "(h = W_hr (o * tanh(c))): only proj_size=0 LSTMs export"
        )
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError("fastgru ONNX export: the LSTM's hx must be a tuple (h0, c0)")
    h0, c0 = hx
    H = module.hidden_size
    _check(module, input, [("h0", h0, H), ("c0", c0, H)], lengths, "LSTM")
    out, h_n, c_n = _layers(module, input, h0, c0, lengths, "LSTM", lstm_onnx_weights)
    return out, (h_n, c_n)
