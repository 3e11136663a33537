"""convert(): swap torch.nn's recurrent modules in a model for fastgru's, or back."""

from __future__ import annotations

import copy

from torch import nn

from .lstm import LSTM, LSTMCell
from .recurrent import GRU, GRUCell, RecurrentBase

__all__ = ["convert"]


def _fast_modules():
    """The torch.nn classes fastgru replaces, and their replacements."""
    return {nn.GRU: GRU, nn.GRUCell: GRUCell, nn.LSTM: LSTM, nn.LSTMCell: LSTMCell}


def _swap(module: nn.Module, target: type) -> nn.Module:
    """A new ``target`` module with ``module``'s configuration, sharing its Parameter objects."""
    if not getattr(module, "reset_after", True):
        raise ValueError(
            f"convert: a {type(module).__name__} with reset_after=False has no torch.nn equivalent (nn.GRU and "
            "nn.GRUCell apply the reset gate after the recurrent matmul); keep it a fastgru module"
        )
    if isinstance(module, (nn.RNNBase, RecurrentBase)):
        extra = {"proj_size": module.proj_size} if module.proj_size else {}
        new = target(
            module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
            module.dropout, module.bidirectional, device="meta", **extra,
        )
        names = module._flat_weights_names
    else:
        new = target(module.input_size, module.hidden_size, module.bias, device="meta")
        names = [n for n, _ in module.named_parameters(recurse=False)]
    for name in names:
        setattr(new, name, getattr(module, name))
    if isinstance(new, nn.RNNBase):
        new._init_flat_weights()
    new.train(module.training)
    return new


def convert(model: nn.Module, inplace: bool = False, to: str = "fastgru") -> nn.Module:
    """Swap every nn.GRU / nn.GRUCell / nn.LSTM / nn.LSTMCell in ``model`` for fastgru's
    (``to="fastgru"``), or back (``to="torch"``). Parameters are kept as they are (same tensors,
    device and dtype). A fastgru module with ``reset_after=False`` cannot become an nn module:
    ValueError, before anything changes. Returns the converted model; with ``inplace=False`` the
    input model is left untouched."""
    if to not in ("fastgru", "torch"):
        raise ValueError(f'to must be "fastgru" or "torch", got {to!r}')
    to_fast = _fast_modules()
    table = to_fast if to == "fastgru" else {fast: torch_cls for torch_cls, fast in to_fast.items()}
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
