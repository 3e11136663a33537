"""Subclasses of torch.nn's recurrent modules whose recurrence runs in fastgru.

Libraries often subclass nn.GRU to add behaviour around its forward (pack an unsorted batch,
handle zero-length rows) and reach nn.GRU's computation through ``super().forward``. convert()
keeps such a module what it is (its class, its methods, its attributes and its Parameters) and
only changes where ``super().forward`` lands: the module's class becomes a subclass of its own
class and of a *routed* torch class, a subclass of nn.GRU whose forward is fastgru.GRU's. The
method resolution order is then ``Sub -> routed nn.GRU -> nn.GRU``, so every ``super().forward``
in ``Sub`` (and in its bases between it and nn.GRU) runs fastgru, while the Parameters, their
names and the state_dict are nn.GRU's as before. Converting back restores the original class.

Whether a subclass can be routed is read from its source: every class between the module's class
and the torch class that defines ``forward`` must call ``super().forward`` (or
``super(Class, self).forward``). A forward that never does, that calls ``nn.GRU.forward(self, ...)``
by name (Python binds that to torch's function: no class in between can intercept it), or whose
source cannot be read, is not routed: convert() warns, naming the module, or raises when strict.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap

from torch import nn

from .lstm import LSTM, LSTMCell
from .recurrent import GRU, GRUCell

__all__ = ["TORCH_TO_FAST", "torch_base", "routing_problem", "routed", "original_class", "RoutedRecurrence"]

# The torch.nn classes fastgru replaces, and their replacements.
TORCH_TO_FAST = {nn.GRU: GRU, nn.GRUCell: GRUCell, nn.LSTM: LSTM, nn.LSTMCell: LSTMCell}

# What a routed class takes from fastgru's module: the forward and the hooks it calls (the
# family's state and function: RecurrentBase's and CellBase's docstrings). Everything else
# (construction, parameters, _flat_weights, repr, flatten_parameters) stays torch's.
_LAYER_FORWARD = ("forward", "_forward_packed", "_run", "_call", "_export", "_run_pytorch_packed",
                  "_layer_weights", "_zero_state", "_check_state", "_unbatch_state")
_CELL_FORWARD = ("forward", "_step", "_zero_state", "_check_state", "_unbatch_state")


class RoutedRecurrence:
    """Marks a torch.nn recurrent class whose forward is fastgru's (``strategy`` None: the
    dispatcher picks; nn's modules have no reset_after=False)."""

    strategy = None
    reset_after = True


def _routed_torch_class(torch_cls: type) -> type:
    fast = TORCH_TO_FAST[torch_cls]
    names = _CELL_FORWARD if issubclass(torch_cls, nn.RNNCellBase) else _LAYER_FORWARD
    body = {name: getattr(fast, name) for name in names}
    body["__doc__"] = f"nn.{torch_cls.__name__} whose forward is fastgru.{fast.__name__}'s."
    body["__module__"] = __name__
    return type(f"Routed{torch_cls.__name__}", (RoutedRecurrence, torch_cls), body)


_ROUTED_TORCH = {torch_cls: _routed_torch_class(torch_cls) for torch_cls in TORCH_TO_FAST}
_ROUTED: dict[type, type] = {}


def torch_base(cls: type) -> type | None:
    """The torch.nn recurrent class ``cls`` is (or derives from), or None."""
    for torch_cls in TORCH_TO_FAST:
        if issubclass(cls, torch_cls):
            return torch_cls
    return None


def _global_value(node: ast.expr, namespace: dict):
    """The object a dotted name (``nn.GRU``, ``torch.nn.GRU``, ``GRU``) denotes in a module's
    globals, or None where it is not one (a local such as ``self``, a call, a subscript)."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, getattr(builtins, node.id, None))
    if isinstance(node, ast.Attribute):
        owner = _global_value(node.value, namespace)
        return None if owner is None else getattr(owner, node.attr, None)
    return None


def _forward_calls(function) -> tuple[bool, bool]:
    """(calls super().forward, calls a torch recurrent class's forward by name) in ``function``'s
    source. Raises OSError / TypeError / SyntaxError where the source cannot be read."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    via_super = by_name = False
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr == "forward"):
            continue
        owner = node.value
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            via_super = True
        else:
            value = _global_value(owner, function.__globals__)
            by_name |= isinstance(value, type) and torch_base(value) is not None
    return via_super, by_name


@functools.cache
def routing_problem(cls: type) -> str | None:
    """Why ``cls`` (a subclass of a torch.nn recurrent class) cannot be routed to fastgru, or None
    where it can: every forward between it and the torch class reaches the next through
    ``super().forward``."""
    torch_cls = torch_base(cls)
    for klass in cls.__mro__:
        if klass is torch_cls:
            return None
        forward = klass.__dict__.get("forward")
        if forward is None:
            continue
        where = f"{klass.__qualname__}.forward"
        try:
            via_super, by_name = _forward_calls(forward)
        except (OSError, TypeError, SyntaxError):
            return f"the source of {where} cannot be read, so fastgru cannot tell what it computes"
        if by_name:
            return (f"{where} calls a torch.nn class's forward by name, which no subclass can intercept "
                    "(write super().forward(...) to let fastgru run the recurrence)")
        if not via_super:
            return f"{where} does not call super().forward, so it does not compute through nn.{torch_cls.__name__}"
    return None


def _reduce(cls: type) -> nn.Module:
    """Unpickling a routed module: a bare instance of the routed class of ``cls``."""
    klass = routed(cls)
    return klass.__new__(klass)


def _reduce_ex(self, protocol):
    # A routed class is made at run time: pickle (and deepcopy) name the user's class instead.
    return _reduce, (original_class(self),), self.__getstate__()


def routed(cls: type) -> type:
    """The routed twin of ``cls`` (one per class): ``cls`` first in its MRO, then the routed
    torch class, so ``super().forward`` in ``cls`` runs fastgru. Its name is ``cls``'s."""
    if cls not in _ROUTED:
        body = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                "_fastgru_original": cls, "__reduce_ex__": _reduce_ex}
        _ROUTED[cls] = type(cls.__name__, (cls, _ROUTED_TORCH[torch_base(cls)]), body)
    return _ROUTED[cls]


def original_class(module: nn.Module) -> type:
    """The class a routed module had before convert()."""
    return type(module)._fastgru_original
