"""convert(): swap torch.nn's recurrent modules in a model for fastgru's, or back, and route
subclasses of them (nn/subclasses.py) so that they compute in fastgru."""

from __future__ import annotations

import copy
import warnings

from torch import nn

from .recurrent import RecurrentBase
from .subclasses import TORCH_TO_FAST, RoutedRecurrence, original_class, routed, routing_problem, torch_base

__all__ = ["convert", "ConvertWarning"]


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


class ConvertWarning(UserWarning):
    """convert() left a recurrent module as it was: it could not tell how to run it in fastgru."""


def _actions(model: nn.Module, to: str) -> list[tuple[str, nn.Module, object]]:
    """What convert does to each recurrent module of ``model``, by its path: ("swap", class) a new
    module of that class; ("route", None) a torch subclass whose super().forward will run fastgru;
    ("restore", None) a routed module back to its own class; ("skip", reason) left as it is."""
    table = TORCH_TO_FAST if to == "fastgru" else {fast: torch_cls for torch_cls, fast in TORCH_TO_FAST.items()}
    actions = []
    for path, m in model.named_modules(remove_duplicate=False):  # every path to a shared module
        kind = type(m)
        if kind in table:
            actions.append((path, m, ("swap", table[kind])))
        elif isinstance(m, RoutedRecurrence):
            if to == "torch":
                actions.append((path, m, ("restore", None)))
        elif to == "fastgru" and torch_base(kind) is not None:
            problem = routing_problem(kind)
            actions.append((path, m, ("skip", problem) if problem else ("route", None)))
        elif to == "torch" and isinstance(m, tuple(table)):
            actions.append((path, m, ("skip", f"{kind.__qualname__} subclasses a fastgru module; it has no torch.nn "
                                              "class to become")))
    return actions


def _describe(path: str, m: nn.Module) -> str:
    return f"{path or '<the model itself>'} ({type(m).__qualname__})"


def convert(model: nn.Module, inplace: bool = False, to: str = "fastgru", *, strict: bool = False) -> nn.Module:
    """Swap every nn.GRU / nn.GRUCell / nn.LSTM / nn.LSTMCell in ``model`` for fastgru's
    (``to="fastgru"``), or back (``to="torch"``). Parameters are kept as they are (same tensors,
    device and dtype). Returns the converted model; with ``inplace=False`` the input model is left
    untouched.

    A *subclass* of one of those classes (a library's nn.GRU with its own forward) keeps its class,
    methods and Parameters; where its forward reaches nn.GRU's through ``super().forward``, that
    call runs fastgru from then on (nn/subclasses.py), and ``to="torch"`` restores the class it
    had. Where fastgru cannot tell what a subclass computes (its forward never calls
    ``super().forward``, calls ``nn.GRU.forward`` by name, or has no readable source), the module
    is left as it is with a ConvertWarning naming its path, or, with ``strict=True``, a
    RuntimeError before anything changes. No recurrent module is ever skipped silently.

    Raises before anything changes: ValueError for a fastgru module with ``reset_after=False``
    and ``to="torch"`` (no torch.nn module computes it)."""
    if to not in ("fastgru", "torch"):
        raise ValueError(f'to must be "fastgru" or "torch", got {to!r}')
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    actions = _actions(model, to)
    skipped = [(path, m, what[1]) for path, m, what in actions if what[0] == "skip"]
    if strict and skipped:
        raise RuntimeError("convert(strict=True): fastgru cannot convert " + "; ".join(
            f"{_describe(path, m)}: {reason}" for path, m, reason in skipped))
    for _, m, (what, target) in actions:
        if what == "swap" and not getattr(m, "reset_after", True):
            _swap(m, target)  # raises: checked for every module before any is swapped
    if not inplace:
        model = copy.deepcopy(model)
        actions = _actions(model, to)
    for path, m, reason in skipped:
        warnings.warn(f"convert: left {_describe(path, m)} as it is: {reason}", ConvertWarning, stacklevel=2)
    modules = dict(model.named_modules(remove_duplicate=False))
    swapped = {}  # id(old module) -> its replacement: a module shared by several paths stays shared
    for path, m, (what, target) in actions:
        if what == "route" and not isinstance(m, RoutedRecurrence):
            m.__class__ = routed(type(m))
        elif what == "restore" and isinstance(m, RoutedRecurrence):
            m.__class__ = original_class(m)
        elif what == "swap":
            if id(m) not in swapped:
                swapped[id(m)] = _swap(m, target)
            new = swapped[id(m)]
            if not path:
                return new  # the model is itself the module (it has no recurrent children)
            parent, _, name = path.rpartition(".")
            setattr(modules[parent], name, new)
    return model
