"""The guard every op family passes through.

Two decorators, one per side of the custom-op boundary:

  ``autocast_entry``  on each public function (fastgru.functional): under ``torch.autocast`` every
                      floating tensor argument (nested lists and tuples included) is cast to the
                      autocast dtype and the function runs with autocast off, as nn.GRU and the
                      matmul-based torch modules run in the autocast dtype. Outside autocast it
                      changes nothing.
  ``op_entry``        on each custom op's implementation (what runs eagerly and inside compiled
                      graphs): the CUDA device of the tensor arguments is made current, so a
                      module on ``cuda:1`` launches there whatever device is current, and tensor
                      arguments are made contiguous, except those the op names as strided (their
                      kernels take explicit strides; only a unit stride on the last dimension is
                      required of them).

The TF32 rule the launchers follow is launchers/tf32.py's.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import torch


def _map_tensors(fn, obj):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(fn, o) for o in obj)
    return obj


def _first_tensor(objs):
    for obj in objs:
        if isinstance(obj, torch.Tensor):
            return obj
        if isinstance(obj, (list, tuple)):
            found = _first_tensor(obj)
            if found is not None:
                return found
    return None


def autocast_entry(fn):
    """Decorator for a public function: under torch.autocast (on the device of its first tensor
    argument) cast floating tensor arguments to the autocast dtype and run with autocast off."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = _first_tensor([*args, *kwargs.values()])
        if first is None or not torch.is_autocast_enabled(first.device.type):
            return fn(*args, **kwargs)
        device_type = first.device.type
        dtype = torch.get_autocast_dtype(device_type)
        cast = lambda t: t.to(dtype) if t.is_floating_point() else t  # noqa: E731
        args, kwargs = _map_tensors(cast, args), {k: _map_tensors(cast, v) for k, v in kwargs.items()}
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def device_of(*tensors) -> contextlib.AbstractContextManager:
    """``torch.cuda.device`` of the first CUDA tensor among ``tensors`` (a no-op context without one)."""
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_cuda:
            return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _unit_last_stride(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 0 or t.stride(-1) == 1 else t.contiguous()


def op_entry(strided=()):
    """Decorator for a custom op's implementation: tensor arguments contiguous (those named in
    ``strided`` only with a unit last stride), and the CUDA device of the tensors current while
    it runs. The wrapped function keeps its signature, from which torch.library reads the schema."""

    def decorate(fn):
        signature = inspect.signature(fn)
        unknown = set(strided) - set(signature.parameters)
        if unknown:
            raise ValueError(f"op_entry: {fn.__name__} has no arguments {sorted(unknown)}")

        def prepare(name, a):
            if not isinstance(a, torch.Tensor):
                return a
            return _unit_last_stride(a) if name in strided else a.contiguous()

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            for name, a in bound.arguments.items():
                bound.arguments[name] = prepare(name, a)
            with device_of(*bound.arguments.values()):
                return fn(*bound.args, **bound.kwargs)

        return wrapper

    return decorate
