"""GRU and GRUCell: drop-in replacements for torch.nn.GRU / nn.GRUCell, and convert().

Same constructor arguments, parameter names, shapes and init as torch.nn, so state_dicts load
both ways. Parameters are plain, separate nn.Parameters (no flat weight buffer), so sharing,
tying, deepcopy and pickling behave like any module, and torch.compile can trace the module.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import functional as F_
from ..launchers.plan import STRATEGIES

__all__ = ["GRU", "GRUCell", "convert"]


def _device_lengths(sorted_lengths: torch.Tensor, device) -> torch.Tensor:
    """Non-increasing host lengths (B,) as an int64 tensor on ``device`` without a host-to-device
    copy: one fill per run of equal lengths, each with a host scalar (at most T fills). A copy of
    pageable host memory is not allowed inside a CUDA graph capture; a fill's scalar is baked in."""
    values = sorted_lengths.tolist()  # host data: no synchronisation
    out = torch.empty(len(values), dtype=torch.int64, device=device)
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out[start:i].fill_(values[start])
            start = i
    return out


class GRU(nn.Module):
    """Multi-layer GRU with nn.GRU's interface; the recurrence runs in fused Triton kernels on GPU.

    Extra keywords:
      ``reset_after`` (default True): nn.GRU's formulation, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
        False is the original one (Cho et al. 2014; Keras' GRU(reset_after=False), ONNX's GRU with
        linear_before_reset=0): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Same parameters.
      ``strategy`` (None, "rows", "stepwise", "persistent" or "cudnn") forces a recurrence kernel, or
        PyTorch's own GRU operator (benchmarks, tests). None: the dispatcher's measured table, and its
        rules where the table has no entry; ``fastgru.explain(module, input)`` says which and why.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
        strategy: str | None = None,
        **kwargs,
    ):
        super().__init__()
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after should be a bool, got: {type(reset_after).__name__}")
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {strategy!r}")
        if kwargs:
            raise TypeError(f"GRU got unexpected keyword arguments {sorted(kwargs)}")
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            )
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
            )
        self.mode = "GRU"
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        self.reset_after = reset_after
        self.strategy = strategy
        factory = {"device": device, "dtype": dtype}
        D = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                shapes = {"weight_ih": (3 * hidden_size, layer_input), "weight_hh": (3 * hidden_size, hidden_size)}
                if bias:
                    shapes.update({"bias_ih": (3 * hidden_size,), "bias_hh": (3 * hidden_size,)})
                for kind, shape in shapes.items():
                    self.register_parameter(kind + sfx, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(kind + sfx)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        per = 4 if self.bias else 2
        w = self._flat_weights
        return [w[i : i + per] for i in range(0, len(w), per)]

    def flatten_parameters(self) -> None:
        """No-op, for code written for nn.GRU: fastgru keeps no flat weight buffer."""

    def _layer_weights(self):
        return [tuple(ws) + ((None, None) if not self.bias else ()) for ws in self.all_weights]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        if self.reset_after is not True:
            s += ", reset_after={reset_after}"
        return s.format(**self.__dict__)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("strategy", None)
        self.__dict__.setdefault("reset_after", True)

    def forward(self, input, hx=None, *, lengths=None):
        """nn.GRU's forward. Beyond it, ``lengths`` (B,) integers in [1, T] with a padded batched
        input: each row runs over its first lengths[b] steps, exactly as if the batch had been
        packed (outputs past a row's length are zero, h_n is each row's state at its length, the
        reverse direction starts at the row's last step), without packing it."""
        D = 2 if self.bidirectional else 1
        if lengths is not None and not (isinstance(input, torch.Tensor) and input.dim() == 3):
            raise ValueError("GRU: lengths goes with a padded 3-D batched input (a PackedSequence carries its own)")
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"GRU: input must be a Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"GRU: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        if not batched:
            # (L, H_in) whatever batch_first says: add a batch of one where batch_first expects it.
            input = input.unsqueeze(0 if self.batch_first else 1)
            if hx is not None:
                if hx.dim() != 2:
                    raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
                hx = hx.unsqueeze(1)
        elif hx is not None and hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
        B = input.shape[0] if self.batch_first else input.shape[1]
        if hx is None:
            hx = torch.zeros(self.num_layers * D, B, self.hidden_size, dtype=input.dtype, device=input.device)
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
        out, h_n = self._run(input, hx, lengths=lengths)
        if not batched:
            out, h_n = out.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return out, h_n

    def _forward_packed(self, packed: PackedSequence, hx):
        # Work in the caller's batch order (hx / h_n are in it: nn.GRU permutes hx by
        # sorted_indices internally and h_n back). The kernels take per-row lengths, so the batch
        # is never split by length. No host synchronisation, so a packed call can be captured in
        # a CUDA graph: the lengths come from batch_sizes (on the host, as PyTorch keeps it), the
        # reorderings use the index tensors where they are (on the device).
        D = 2 if self.bidirectional else 1
        B = int(packed.batch_sizes[0])
        if hx is None:
            hx = torch.zeros(self.num_layers * D, B, self.hidden_size, dtype=packed.data.dtype, device=packed.data.device)
        elif hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
        weights = self._layer_weights()
        if not torch.onnx.is_in_onnx_export() and F_.packed_runs_pytorch(
                packed.data, hx, weights, B, self.bidirectional, self.training, self.strategy, self.reset_after):
            return F_.pytorch_packed_gru(packed, hx, weights, self.num_layers, self.bidirectional, self.dropout,
                                         self.training)
        dim = 0 if self.batch_first else 1
        # Padded in sorted order: pad_packed_sequence with unsorted_indices would copy them to the host.
        padded, sorted_lengths = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes),
                                                     batch_first=self.batch_first)
        lengths = _device_lengths(sorted_lengths, padded.device)
        unsort = packed.unsorted_indices
        if unsort is not None:
            padded = padded.index_select(dim, unsort.to(padded.device))
            lengths = lengths.index_select(0, unsort.to(padded.device))
        out, h_n = self._run(padded, hx, lengths=lengths)
        # Re-pack with exactly the input's batch_sizes and indices (sorted order: the host lengths we have).
        order = packed.sorted_indices
        if order is not None:
            out = out.index_select(dim, order.to(out.device))
        data = pack_padded_sequence(out, sorted_lengths, batch_first=self.batch_first, enforce_sorted=True).data
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), h_n

    def _run(self, input, hx, lengths):
        if torch.onnx.is_in_onnx_export():
            from ..interop.onnx_export import gru_onnx_forward

            return gru_onnx_forward(self, input, hx, lengths)
        return F_.gru(
            input, hx, self._layer_weights(), self.num_layers, self.bidirectional, self.batch_first,
            self.dropout, self.training, lengths, self.strategy, self.reset_after,
        )


class GRUCell(nn.Module):
    """nn.GRUCell's interface; one fused kernel per step on GPU (both matmuls and the gates).
    ``reset_after`` as in GRU (False: the input projection as one GEMM, then the two-phase step
    of the layer kernels)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 reset_after: bool = True):
        super().__init__()
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after should be a bool, got: {type(reset_after).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.reset_after = reset_after
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = GRU.reset_parameters

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if not self.bias:
            s += ", bias={bias}"
        if self.reset_after is not True:
            s += ", reset_after={reset_after}"
        return s.format(**self.__dict__)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("reset_after", True)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"GRUCell: input must be a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = torch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
        elif not batched:
            hx = hx.unsqueeze(0)
        out = F_.gru_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.reset_after)
        return out if batched else out.squeeze(0)


_TO_FAST = {nn.GRU: GRU, nn.GRUCell: GRUCell}
_TO_TORCH = {GRU: nn.GRU, GRUCell: nn.GRUCell}


def _swap(module: nn.Module, target: type) -> nn.Module:
    """A new ``target`` module with ``module``'s configuration, sharing its Parameter objects."""
    if not getattr(module, "reset_after", True):
        raise ValueError(
            f"convert: a {type(module).__name__} with reset_after=False has no torch.nn equivalent (nn.GRU and "
            "nn.GRUCell apply the reset gate after the recurrent matmul); keep it a fastgru module"
        )
    if isinstance(module, (nn.GRU, GRU)):
        new = target(
            module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
            module.dropout, module.bidirectional, device="meta",
        )
        names = module._flat_weights_names
    else:
        new = target(module.input_size, module.hidden_size, module.bias, device="meta")
        names = [n for n, _ in module.named_parameters(recurse=False)]
    for name in names:
        setattr(new, name, getattr(module, name))
    if isinstance(new, nn.GRU):
        new._init_flat_weights()
    new.train(module.training)
    return new


def convert(model: nn.Module, inplace: bool = False, to: str = "fastgru") -> nn.Module:
    """Swap every nn.GRU / nn.GRUCell in ``model`` for fastgru's (``to="fastgru"``), or back
    (``to="torch"``). Parameters are kept as they are (same tensors, device and dtype). A fastgru
    module with ``reset_after=False`` cannot become an nn module: ValueError, before anything changes.
    Returns the converted model; with ``inplace=False`` the input model is left untouched."""
    if to not in ("fastgru", "torch"):
        raise ValueError(f'to must be "fastgru" or "torch", got {to!r}')
    table = _TO_FAST if to == "fastgru" else _TO_TORCH
    for m in model.modules():
        if type(m) in table and not getattr(m, "reset_after", True):
            _swap(m, table[type(m)])  # raises: checked for every module before any is swapped
    if not inplace:
        model = copy.deepcopy(model)
    if type(model) in table:
        return _swap(model, table[type(model)])
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in table:
                setattr(parent, name, _swap(child, table[type(child)]))
    return model
