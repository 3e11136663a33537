"""GRU and GRUCell: drop-in replacements for torch.nn.GRU / nn.GRUCell.

Same constructor arguments, parameter names, shapes and init as torch.nn, so state_dicts load
both ways. Parameters are plain, separate nn.Parameters (no flat weight buffer), so sharing,
tying, deepcopy and pickling behave like any module, and torch.compile can trace the module.

What the GRU and the LSTM (nn/lstm.py) have in common lives here once: ``RecurrentBase`` (the
constructor's checks, the parameters, init, repr, and the forward around the state: unbatched
input, a PackedSequence, ``lengths=``) and ``CellBase`` (the same for the cells). A subclass
says only what its state is (one tensor, or the pair (h, c)) and which function runs it.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import functional as F_
from ..launchers.plan import STRATEGIES

__all__ = ["GRU", "GRUCell", "RecurrentBase", "CellBase"]


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


def check_sizes(sizes: dict) -> None:
    """nn's checks of integer sizes: an int (not a bool), greater than zero."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")


def check_strategy_argument(strategy) -> None:
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {strategy!r}")


def _rank_words(batched: bool) -> tuple[str, int]:
    """How nn's messages name the input's rank, and the rank the state must have with it."""
    return ("batched 3-D", 3) if batched else ("unbatched 2-D", 2)


def _run_packed(packed: PackedSequence, batch_first: bool, run):
    """Run ``run(padded, lengths) -> (padded output, final state)`` on a PackedSequence and pack
    the output again with exactly the input's batch_sizes and indices.

    Works in the caller's batch order (hx and the final state are in it: nn's modules permute hx
    by sorted_indices internally and the state back). The kernels take per-row lengths, so the
    batch is never split by length. No host synchronisation, so a packed call can be captured in
    a CUDA graph: the lengths come from batch_sizes (on the host, as PyTorch keeps it), the
    reorderings use the index tensors where they are (on the device)."""
    dim = 0 if batch_first else 1
    # Padded in sorted order: pad_packed_sequence with unsorted_indices would copy them to the host.
    padded, sorted_lengths = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes),
                                                 batch_first=batch_first)
    lengths = _device_lengths(sorted_lengths, padded.device)
    unsort = packed.unsorted_indices
    if unsort is not None:
        padded = padded.index_select(dim, unsort.to(padded.device))
        lengths = lengths.index_select(0, unsort.to(padded.device))
    out, state = run(padded, lengths)
    # Re-pack with exactly the input's batch_sizes and indices (sorted order: the host lengths we have).
    order = packed.sorted_indices
    if order is not None:
        out = out.index_select(dim, order.to(out.device))
    data = pack_padded_sequence(out, sorted_lengths, batch_first=batch_first, enforce_sorted=True).data
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), state


class RecurrentBase(nn.Module):
    """What fastgru.GRU and fastgru.LSTM share: nn.RNNBase's attributes, parameter names, shapes,
    init and repr, and the forward around the recurrence (unbatched input, PackedSequence,
    ``lengths=``, a zero initial state). A subclass states its state:

      ``_zero_state(B, like)``        the initial state of a batch of B rows
      ``_check_state(hx, batched)``   hx checked as nn checks it, with a batch axis of one added
                                      for unbatched input
      ``_unbatch_state(state)``       the batch axis of one removed again
      ``_call(input, hx, lengths)``   a batched (3-D) call -> (output, final state): the
                                      family's function
      ``_export(input, hx, lengths)`` the same while torch.onnx.export traces: the family's
                                      export form (one ONNX node per layer)
      ``_run_pytorch_packed(packed, hx)``  PyTorch's own operator on a packed input where it is
                                      the one to run (None: pad and run the kernels)
    """

    def _setup(self, mode, gates, input_size, hidden_size, num_layers, bias, batch_first, dropout,
               bidirectional, proj_size, strategy, factory) -> None:
        """nn.RNNBase's checks and attributes, and the parameters in its order and shapes
        (``gates`` blocks of hidden_size rows in the input and recurrent weights)."""
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            )
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        check_sizes({"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers})
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
            )
        if not isinstance(proj_size, int) or isinstance(proj_size, bool):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        gate_size = gates * hidden_size
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.strategy = strategy
        D = 2 if bidirectional else 1
        R = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else R * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, R)}
                if bias:
                    shapes.update({"bias_ih": (gate_size,), "bias_hh": (gate_size,)})
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
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
        w = self._flat_weights
        per = len(w) // (self.num_layers * (2 if self.bidirectional else 1))
        return [w[i : i + per] for i in range(0, len(w), per)]

    def flatten_parameters(self) -> None:
        """No-op, for code written for nn.GRU / nn.LSTM: fastgru keeps no flat weight buffer."""

    def _layer_weights(self):
        """Per layer and direction, nn's order: (w_ih, w_hh, b_ih, b_hh), and w_hr for an LSTM;
        None for a bias or projection the module does not have."""
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + (("weight_hr",) if self.mode == "LSTM" else ())
        D = 2 if self.bidirectional else 1
        return [
            tuple(getattr(self, f"{kind}_l{layer}{'_reverse' if d == 1 else ''}", None) for kind in kinds)
            for layer in range(self.num_layers) for d in range(D)
        ]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
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
        if getattr(self, "reset_after", True) is not True:
            s += ", reset_after={reset_after}"
        return s.format(**self.__dict__)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("strategy", None)

    def forward(self, input, hx=None, *, lengths=None):
        """nn's forward. Beyond it, ``lengths`` (B,) integers in [1, T] with a padded batched
        input: each row runs over its first lengths[b] steps, exactly as if the batch had been
        packed (outputs past a row's length are zero, the final state is each row's state at its
        length, the reverse direction starts at the row's last step), without packing it."""
        if lengths is not None and not (isinstance(input, torch.Tensor) and input.dim() == 3):
            raise ValueError(
                f"{self.mode}: lengths goes with a padded 3-D batched input (a PackedSequence carries its own)"
            )
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{self.mode}: input must be a Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        if not batched:
            # (L, H_in) whatever batch_first says: add a batch of one where batch_first expects it.
            input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is not None:
            hx = self._check_state(hx, batched)
        B = input.shape[0] if self.batch_first else input.shape[1]
        if hx is None:
            hx = self._zero_state(B, input)
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
        out, state = self._run(input, hx, lengths=lengths)
        if not batched:
            out, state = out.squeeze(0 if self.batch_first else 1), self._unbatch_state(state)
        return out, state

    def _run(self, input, hx, lengths):
        """A batched (3-D) call -> (output, final state): the family's export form while
        torch.onnx.export traces, else its function."""
        if torch.onnx.is_in_onnx_export():
            return self._export(input, hx, lengths)
        return self._call(input, hx, lengths)

    def _forward_packed(self, packed: PackedSequence, hx):
        """A PackedSequence: PyTorch's own operator on the packed data where it is the one to run
        (never during an ONNX export, which traces the export form), else padded, run, packed again."""
        B = int(packed.batch_sizes[0])
        hx = self._zero_state(B, packed.data) if hx is None else self._check_state(hx, True)
        direct = None if torch.onnx.is_in_onnx_export() else self._run_pytorch_packed(packed, hx)
        if direct is not None:
            return direct
        return _run_packed(packed, self.batch_first, lambda padded, lengths: self._run(padded, hx, lengths=lengths))


class GRU(RecurrentBase):
    """Multi-layer GRU with nn.GRU's interface; the recurrence runs in fused Triton kernels on GPU.

    Extra keywords:
      ``reset_after`` (default True): nn.GRU's formulation, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
        False is the original one (Cho et al. 2014; Keras' GRU(reset_after=False), ONNX's GRU with
        linear_before_reset=0): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Same parameters.
      ``strategy`` (None, "rows", "stepwise", "persistent" or "cudnn") forces a recurrence kernel, or
        PyTorch's own GRU operator (benchmarks, tests). None: the dispatcher's measured table, and its
        rules where the table has no entry; ``fastgru.explain(module, input)`` says which and why.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, reset_after: bool = True, strategy: str | None = None, **kwargs):
        super().__init__()
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after should be a bool, got: {type(reset_after).__name__}")
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        check_strategy_argument(strategy)
        if kwargs:
            raise TypeError(f"GRU got unexpected keyword arguments {sorted(kwargs)}")
        self.reset_after = reset_after
        self._setup("GRU", 3, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, 0, strategy, {"device": device, "dtype": dtype})

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("reset_after", True)

    def _zero_state(self, B, like):
        D = 2 if self.bidirectional else 1
        return torch.zeros(self.num_layers * D, B, self.hidden_size, dtype=like.dtype, device=like.device)

    def _check_state(self, hx, batched):
        words, rank = _rank_words(batched)
        if hx.dim() != rank:
            raise RuntimeError(f"For {words} input, hx should also be {rank}-D but got {hx.dim()}-D tensor")
        return hx if batched else hx.unsqueeze(1)

    def _unbatch_state(self, h_n):
        return h_n.squeeze(1)

    def _run_pytorch_packed(self, packed, hx):
        B = int(packed.batch_sizes[0])
        weights = self._layer_weights()
        if F_.packed_runs_pytorch(packed.data, hx, weights, B, self.bidirectional, self.training, self.strategy,
                                  self.reset_after):
            return F_.pytorch_packed_gru(packed, hx, weights, self.num_layers, self.bidirectional, self.dropout,
                                         self.training)
        return None

    def _export(self, input, hx, lengths):
        from ..functional.onnx_forms import gru_onnx_forward

        return gru_onnx_forward(self, input, hx, lengths)

    def _call(self, input, hx, lengths):
        return F_.gru(input, hx, self._layer_weights(), self.num_layers, self.bidirectional, self.batch_first,
                      self.dropout, self.training, lengths, self.strategy, self.reset_after)


class CellBase(nn.Module):
    """What fastgru.GRUCell and fastgru.LSTMCell share: nn.RNNCellBase's attributes, parameters,
    init and repr, and the forward around the step (unbatched input, a zero state). A subclass
    states its state as RecurrentBase's do (``_zero_state``, ``_check_state``, ``_unbatch_state``)
    and runs the step in ``_step(input, hx)``."""

    def _setup(self, gates, input_size, hidden_size, bias, factory) -> None:
        """nn.RNNCellBase's attributes and parameters (``gates`` blocks of hidden_size rows)."""
        check_sizes({"input_size": input_size, "hidden_size": hidden_size})
        gate_size = gates * hidden_size
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(gate_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gate_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RecurrentBase.reset_parameters

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if not self.bias:
            s += ", bias={bias}"
        if getattr(self, "reset_after", True) is not True:
            s += ", reset_after={reset_after}"
        return s.format(**self.__dict__)

    def forward(self, input: torch.Tensor, hx=None):
        name = type(self).__name__
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        batched = input.dim() == 2
        if hx is not None:
            hx = self._check_state(hx, batched)
        if not batched:
            input = input.unsqueeze(0)
        out = self._step(input, self._zero_state(input.shape[0], input) if hx is None else hx)
        return out if batched else self._unbatch_state(out)


class GRUCell(CellBase):
    """nn.GRUCell's interface; one fused kernel per step on GPU (both matmuls and the gates).
    ``reset_after`` as in GRU (False: the input projection as one GEMM, then the two-phase step
    of the layer kernels)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 reset_after: bool = True):
        super().__init__()
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after should be a bool, got: {type(reset_after).__name__}")
        self.reset_after = reset_after
        self._setup(3, input_size, hidden_size, bias, {"device": device, "dtype": dtype})

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("reset_after", True)

    def _zero_state(self, B, like):
        return torch.zeros(B, self.hidden_size, dtype=like.dtype, device=like.device)

    def _check_state(self, hx, batched):
        if hx.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        return hx if batched else hx.unsqueeze(0)

    def _unbatch_state(self, h):
        return h.squeeze(0)

    def _step(self, input, hx):
        return F_.gru_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.reset_after)
