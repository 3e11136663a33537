"""ONNX export of fastgru.GRU: each layer becomes one standard ONNX ``GRU`` node.

``torch.onnx.export`` cannot see through fastgru's kernels (Triton launches, custom ops). While
an export runs, ``fastgru.GRU._run`` hands its work to :func:`gru_onnx_forward`, which writes the
module's recurrence as ONNX's own GRU operator, so any ONNX runtime runs it with its native
recurrent kernel instead of an unrolled loop.

The graph, per layer ``l`` (time-major; ``D`` = 1 or 2 directions, ``H`` = hidden_size)::

    X_l (T, B, I_l) --GRU(hidden_size=H, direction=forward|bidirectional,
                          linear_before_reset=1 (reset_after=True, nn.GRU's formula) or
                                              0 (reset_after=False))--> Y (T, D, B, H), Y_h (D, B, H)
    X_{l+1} = Transpose(Y, (0, 2, 1, 3)) reshaped to (T, B, D*H)

with the node's inputs

- ``W`` (D, 3H, I_l) and ``R`` (D, 3H, H): weight_ih / weight_hh of each direction with the
  gate blocks reordered from fastgru's (r, z, n) to ONNX's (z, r, h);
- ``B`` (D, 6H): [bias_ih, bias_hh] of each direction, reordered the same way (left out for
  ``bias=False``, which ONNX reads as zeros);
- ``sequence_lens`` (B,) int32: the ``lengths`` argument cast, when given (left out otherwise);
- ``initial_h`` (D, B, H): the layer's slice of ``hx`` (zeros when the caller passed none).

The weights are computed from the parameters by gathers, concats and stacks, which the dynamo
exporter's default optimisation (``optimize=True``) and the TorchScript exporter's constant
folding turn into ready initializers. ``h_n`` is the layers' ``Y_h`` concatenated (L*D, B, H). With
``lengths``, the last layer's output is additionally multiplied by the mask ``t < lengths[b]``,
so steps past a row's length are zero on any runtime (ONNX leaves those values to the runtime;
onnxruntime happens to zero them too). Dropout between layers only acts in training and is not
exported; a module in training mode with active dropout is refused.

Two exporters are covered:

- ``torch.onnx.export(..., dynamo=True)`` (the default): the node is emitted with
  ``torch.onnx.ops.symbolic_multi_out``; batch and time axes may be dynamic
  (``dynamic_shapes``).
- ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter, deprecated by PyTorch):
  the node is emitted by the ``symbolic`` of a ``torch.autograd.Function``; ``dynamic_axes`` work.

``lengths`` values are not checked in the graph (they are unknown while tracing); onnxruntime
itself rejects values outside [0, T]. Every other fastgru op takes its plain PyTorch path while
exporting (fastgru.backend.backend_for), so GRUAttention exports whole.

Outside an export :func:`gru_onnx_forward` must not run: the placeholders produced while
tracing hold zeros, not a GRU's result.
"""

from __future__ import annotations

import torch

from .layer_weights import module_layer
from .onnx_weights import onnx_layer_tensors

__all__ = ["gru_onnx_forward", "gru_onnx_weights", "GRU_ONNX_DTYPES"]

# The dtypes ONNX's GRU takes (onnxruntime's CPU kernel runs float32 only).
GRU_ONNX_DTYPES = (torch.float16, torch.float32, torch.float64)


def gru_onnx_weights(module, layer: int):
    """ONNX GRU inputs (W (D, 3H, I), R (D, 3H, H), B (D, 6H) or None) for ``layer`` of a
    fastgru.GRU (or torch.nn.GRU): gate blocks in ONNX's (z, r, h) order, forward direction
    first. Differentiable torch ops on the parameters (tracing records them)."""
    directions, _ = module_layer(module, layer, "ONNX export")
    return onnx_layer_tensors(directions)


class _LegacyGRUNode(torch.autograd.Function):
    """The ONNX GRU node for the TorchScript exporter (``dynamo=False``): traced as one opaque
    op whose ``symbolic`` writes the node. Its forward only gives the outputs' shapes."""

    @staticmethod
    def forward(ctx, x, W, R, B, seq_lens, h0, hidden_size, direction, linear_before_reset):
        T, batch, D = x.shape[0], x.shape[1], W.shape[0]
        return x.new_zeros(T, D, batch, hidden_size), x.new_zeros(D, batch, hidden_size)

    @staticmethod
    def symbolic(g, x, W, R, B, seq_lens, h0, hidden_size, direction, linear_before_reset):
        def optional(value):
            if value is not None:
                return value
            # A missing optional input (written as "" in the ONNX node).
            missing = g.op("prim::Constant")
            missing.setType(torch._C.OptionalType.ofTensor())
            return missing

        return g.op(
            "GRU", x, W, R, optional(B), optional(seq_lens), h0,
            hidden_size_i=hidden_size, direction_s=direction, linear_before_reset_i=linear_before_reset,
            outputs=2,
        )


def _gru_node(x, W, R, B, seq_lens, h0, hidden_size: int, direction: str, linear_before_reset: int):
    """One ONNX GRU node (layout 0, time-major): returns (Y (T, D, B, H), Y_h (D, B, H))."""
    if torch.jit.is_tracing():  # the TorchScript exporter traces with torch.jit
        return _LegacyGRUNode.apply(x, W, R, B, seq_lens, h0, hidden_size, direction, linear_before_reset)
    symbolic_multi_out = getattr(getattr(torch.onnx, "ops", None), "symbolic_multi_out", None)
    if symbolic_multi_out is None:
        raise RuntimeError(
            f"fastgru: exporting GRU with torch.onnx.export(dynamo=True) needs torch.onnx.ops.symbolic_multi_out "
            f"(torch >= 2.8); this is torch {torch.__version__}. Upgrade torch or export with dynamo=False."
        )
    T, batch, D = x.shape[0], x.shape[1], W.shape[0]
    Y, Y_h = symbolic_multi_out(
        "GRU",
        [x, W, R, B, seq_lens, h0],
        {"hidden_size": hidden_size, "direction": direction, "linear_before_reset": linear_before_reset},
        dtypes=[x.dtype, x.dtype],
        shapes=[[T, D, batch, hidden_size], [D, batch, hidden_size]],
    )
    return Y, Y_h


def _check(module, input, hx, lengths):
    """What can be checked without the values (they are symbolic while exporting)."""
    if not isinstance(input, torch.Tensor) or input.dim() != 3:
        raise ValueError("fastgru ONNX export: the GRU's input must be a batched 3-D tensor")
    if input.dtype not in GRU_ONNX_DTYPES:
        raise TypeError(f"fastgru ONNX export: ONNX's GRU takes {GRU_ONNX_DTYPES}, got input of dtype {input.dtype}")
    weight = module.weight_ih_l0
    if input.dtype != weight.dtype or hx.dtype != input.dtype:
        raise TypeError(
            f"fastgru ONNX export: input ({input.dtype}), hx ({hx.dtype}) and weights ({weight.dtype}) need one dtype"
        )
    if input.shape[-1] != module.input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {module.input_size}, got {input.shape[-1]}")
    D = 2 if module.bidirectional else 1
    batch = input.shape[0] if module.batch_first else input.shape[1]
    if hx.dim() != 3 or hx.shape[0] != module.num_layers * D or hx.shape[2] != module.hidden_size:
        raise RuntimeError(
            f"Expected hidden size ({module.num_layers * D}, {batch}, {module.hidden_size}), got {list(hx.shape)}"
        )
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1:
            raise ValueError("fastgru ONNX export: lengths must be a 1-D integer tensor (one length per batch row)")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if module.training and module.dropout > 0 and module.num_layers > 1:
        raise RuntimeError(
            "fastgru ONNX export: the GRU is in training mode with dropout between layers, which ONNX's GRU "
            "cannot express; call model.eval() before torch.onnx.export"
        )


def gru_onnx_forward(module, input: torch.Tensor, hx: torch.Tensor, lengths: torch.Tensor | None = None):
    """fastgru.GRU's batched forward written as ONNX GRU nodes (one per layer), for
    ``torch.onnx.export``; the module description says which graph comes out.

    input (T, B, I), or (B, T, I) with ``module.batch_first``; hx (L*D, B, H); lengths None or
    (B,) integers in [1, T] (each row runs over its first lengths[b] steps, its reverse
    direction starting at its last one; the values cannot be checked while exporting).
    Returns (output laid out like input with D*H features, zero past each row's length;
    h_n (L*D, B, H)), as ``module(input, hx, lengths=lengths)`` does.
    """
    _check(module, input, hx, lengths)
    x = input.transpose(0, 1) if module.batch_first else input
    T, batch = x.shape[0], x.shape[1]
    D = 2 if module.bidirectional else 1
    H = module.hidden_size
    direction = "bidirectional" if D == 2 else "forward"
    # reset_after=True is nn.GRU's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): ONNX's
    # linear_before_reset=1. reset_after=False applies r before the matmul: linear_before_reset=0.
    linear_before_reset = 1 if getattr(module, "reset_after", True) else 0
    seq_lens = None if lengths is None else lengths.to(device=x.device, dtype=torch.int32)
    layer_in, h_n = x, []
    for layer in range(module.num_layers):
        W, R, B = gru_onnx_weights(module, layer)
        Y, Y_h = _gru_node(layer_in, W, R, B, seq_lens, hx[layer * D : (layer + 1) * D], H, direction,
                           linear_before_reset)
        layer_in = Y.permute(0, 2, 1, 3).reshape(T, batch, D * H)
        h_n.append(Y_h)
    out = layer_in
    if lengths is not None:
        steps = torch.arange(T, device=x.device)
        valid = steps[:, None] < lengths.to(device=x.device)[None, :]  # (T, B)
        out = out * valid[:, :, None].to(out.dtype)
    if module.batch_first:
        out = out.transpose(0, 1)
    return out, torch.cat(h_n) if len(h_n) > 1 else h_n[0]
