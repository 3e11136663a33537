"""A guard that fails loudly wherever a call would synchronise the host with the GPU, usable on
the CPU: what a CUDA graph capture forbids.

``no_host_sync()`` is a context manager. Inside it:

- reading a device tensor's value on the host raises ``HostSyncError``: ``.item()``, ``int()``,
  ``float()``, ``bool()``, ``operator.index`` (all ``aten._local_scalar_dense``), ``.tolist()``,
  ``.numpy()``, ``__array__``, ``.cpu()``, and the ops whose result depends on device values
  on the host: ``torch.equal``, ``nonzero``, ``masked_select``, ``unique``, boolean-mask
  indexing, ``repeat_interleave`` without ``output_size``;
- a host tensor meeting device tensors in one op (an implicit host-to-device copy), a device
  tensor copied to the host, or a host tensor handed to a kernel launch raises too;
- ``fastgru.backend.capturing()`` answers True, so fastgru takes the paths it takes inside a
  real capture (value checks as device-side assertions).

Which tensors are "host" and which "device"? With CUDA tensors (``simulate=False``), by their
device, and ``torch.cuda.set_sync_debug_mode("error")`` is on as well. On the CPU
(``simulate=True``, the default without CUDA) every tensor is a CPU tensor, so the guard tracks
it: the tensors given as ``host=`` (for example a PackedSequence's ``batch_sizes``, which
PyTorch keeps on the host), the lengths that ``pad_packed_sequence`` returns (on the host in
PyTorch), and whatever an op computes from host tensors alone are host tensors; every other
tensor stands for a device tensor. Kernel launches are then recorded, never run: together with
``fastgru.gpu.assume_gpu`` (entered here) the launchers plan and build exactly the launches
an H100 would get, persistent grids included, which the interpreter could not run (their grid
barrier), and the check stays cheap. Outputs hold no computed values then; nothing here may
depend on them, which is the point. With ``simulate=False`` launches run as usual (warm up
first: compiling and autotuning synchronise).

``launches`` on the returned guard lists the (kernel name, grid) of every launch seen.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from fastgru import backend, gpu
from fastgru.launchers import launch as L

aten = torch.ops.aten


class HostSyncError(AssertionError):
    """A call path read device data on the host, or moved data between host and device."""


# Ops whose result needs device values on the host (a synchronisation on CUDA).
_VALUE_READS = {
    aten._local_scalar_dense.default: "a value read on the host (.item(), int(), float(), bool(), index)",
    aten.item.default: "a value read on the host (.item())",
    aten.equal.default: "torch.equal (its bool is computed on the device and read back)",
    aten.is_nonzero.default: "bool() of a tensor",
    aten.nonzero.default: "nonzero (its output size depends on device values)",
    aten.masked_select.default: "masked_select (its output size depends on device values)",
    aten._unique2.default: "unique (its output size depends on device values)",
    aten.unique_dim.default: "unique (its output size depends on device values)",
    aten.unique_consecutive.default: "unique_consecutive (its output size depends on device values)",
}
# Ops that take host metadata beside device data by design (PyTorch keeps lengths on the host).
_HOST_METADATA = {aten._pack_padded_sequence.default}


def _tensors(args, kwargs):
    return [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]


class _Guard(TorchDispatchMode):
    def __init__(self, simulate: bool, host: Iterable[torch.Tensor]):
        super().__init__()
        self.simulate = simulate
        self._host = WeakIdKeyDictionary()
        for t in host:
            self.mark_host(t)
        self.launches: list = []

    # ----------------------------------------------------------------- host or device

    def mark_host(self, t):
        if isinstance(t, torch.Tensor):
            self._host[t] = True

    def is_host(self, t: torch.Tensor) -> bool:
        if not self.simulate:
            return t.device.type == "cpu"
        return t in self._host

    def fail(self, what: str):
        raise HostSyncError(f"host synchronisation inside a guarded call: {what}")

    def check_read(self, t: torch.Tensor, what: str):
        if not self.is_host(t):
            self.fail(f"{what} of a device tensor {tuple(t.shape)} {t.dtype}")

    # ----------------------------------------------------------------- every aten / custom op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors(args, kwargs)
        device = [t for t in inputs if not self.is_host(t)]
        host = [t for t in inputs if self.is_host(t) and t.dim() > 0]  # 0-d host tensors ride as scalars
        if func in _VALUE_READS and device:
            self.fail(_VALUE_READS[func])
        if func is aten.index.Tensor and device and any(
                i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            self.fail("boolean-mask indexing (nonzero: the output size depends on device values)")
        if func is aten.repeat_interleave.Tensor and device and kwargs.get("output_size") is None:
            self.fail("repeat_interleave without output_size (the output size depends on device values)")
        if host and device and func not in _HOST_METADATA:
            self.fail(f"{func} mixes host tensors {[tuple(t.shape) for t in host]} with device tensors "
                      "(an implicit copy between host and device)")
        if not self.simulate and func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else kwargs.get("device", src.device)
            if src.device.type != torch.device(dst).type:
                self.fail(f"a copy from {src.device} to {dst}")

        if func.namespace == "fastgru":
            # A custom op's implementation is fastgru's own Python: run it with the guard on
            # (a mode is off inside its own handler), below the Python dispatch key.
            key = torch._C.DispatchKey.CUDA if any(t.is_cuda for t in inputs) else torch._C.DispatchKey.CPU
            with self:
                out = func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)
        else:
            out = func(*args, **kwargs)

        if self.simulate:
            outs = _tensors(out, {})
            if func is aten._pack_padded_sequence.default:
                self.mark_host(out[1])  # batch_sizes
            elif inputs and not device:  # computed from host tensors alone
                for t in outs:
                    self.mark_host(t)
        return out


class _Target:
    """The launch target installed under the guard: checks that no host tensor reaches a kernel
    and records the launch; runs it only with real CUDA tensors."""

    def __init__(self, guard: _Guard):
        self.guard = guard

    def launch(self, job: L.Launch):
        for i, a in enumerate(job.args):
            if isinstance(a, torch.Tensor) and self.guard.is_host(a):
                self.guard.fail(f"kernel {job.name} gets a host tensor as argument {i} {tuple(a.shape)}")
        self.guard.launches.append((job.name, job.grid))
        if self.guard.simulate:
            return None
        with L.compiling(None):
            return L.launch(job.kernel, job.grid, job.args, job.meta, job.configs)

    def resources(self, job: L.Launch):
        if self.guard.simulate:
            # Fits anywhere: what the planner needs to take its GPU path without compiling.
            return L.Resources(registers=32, shared_bytes=0, num_warps=int(job.meta.get("num_warps", 4)))
        with L.compiling(None):
            return L.resources(job.kernel, job.grid, job.args, job.meta)


_PYTHON_READS = ("tolist", "numpy", "__array__", "cpu")


@contextmanager
def no_host_sync(*, host: Iterable[torch.Tensor] = (), simulate: bool | None = None, sms: int = 132):
    """Guard a block: see the module docstring. ``simulate`` defaults to True without CUDA."""
    if simulate is None:
        simulate = not torch.cuda.is_available()
    guard = _Guard(simulate, host)
    with ExitStack() as stack:
        # Value reads that bypass the dispatcher (they read the memory directly).
        for name in _PYTHON_READS:
            real = getattr(torch.Tensor, name)

            def checked(self, *args, _real=real, _name=name, **kwargs):
                guard.check_read(self, f"Tensor.{_name}")
                return _real(self, *args, **kwargs)

            if name in vars(torch.Tensor):
                stack.callback(setattr, torch.Tensor, name, real)
            else:  # inherited from the C base class: remove the override again
                stack.callback(delattr, torch.Tensor, name)
            setattr(torch.Tensor, name, checked)
        # PyTorch returns pad_packed_sequence's lengths on the host.
        real_pad = torch._VF._pad_packed_sequence

        def pad(*args, **kwargs):
            padded, lengths = real_pad(*args, **kwargs)
            guard.mark_host(lengths)
            return padded, lengths

        torch._VF._pad_packed_sequence = pad
        stack.callback(setattr, torch._VF, "_pad_packed_sequence", real_pad)
        real_capturing = backend.capturing
        backend.capturing = lambda: True
        stack.callback(setattr, backend, "capturing", real_capturing)
        if simulate:
            stack.enter_context(gpu.assume_gpu(sms))
        else:
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            stack.callback(torch.cuda.set_sync_debug_mode, previous)
        stack.enter_context(L.compiling(_Target(guard)))
        stack.enter_context(guard)
        yield guard
