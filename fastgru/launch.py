"""Every kernel launch of fastgru goes through ``launch``; ``resources`` tells what a launch's
compiled kernel uses. The launchers (autograd.py, attention_autograd.py) build each kernel's
arguments in one place and hand them here, so the same code both runs a kernel and, under
``compiling`` (the ahead-of-time compile check, ``python -m bench.compile``), compiles it for a
target GPU without running anything.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from . import backend


@dataclass(frozen=True)
class Launch:
    """One kernel launch as its launcher built it.

    kernel   a ``triton.jit`` function, or a ``triton.autotune`` wrapper around one
    grid     a tuple, or a callable of the launch's meta-parameters (autotuned kernels)
    args     the positional arguments
    meta     keyword arguments: constexprs and launch options (num_warps, launch_cooperative_grid)
    configs  autotuned kernels: the configurations that suit this shape (after pruning); the
             first is the one the interpreter runs
    """

    kernel: Any
    grid: Any
    args: tuple
    meta: dict
    configs: tuple = field(default=())

    @property
    def name(self) -> str:
        fn = self.kernel
        while hasattr(fn, "fn"):
            fn = fn.fn
        return fn.__name__


@dataclass(frozen=True)
class Resources:
    """What one program of a compiled kernel holds on an SM."""

    registers: int  # per thread
    shared_bytes: int
    num_warps: int


class Target(Protocol):
    """What ``compiling`` installs: compile instead of launch."""

    def launch(self, launch: Launch) -> Any: ...

    def resources(self, launch: Launch) -> Resources: ...


_target: Optional[Target] = None


def untuned(kernel):
    """``kernel`` without its autotuner (heuristics, if any, still apply): what runs one
    configuration given explicitly."""
    return kernel.fn if hasattr(kernel, "configs") else kernel


def launch(kernel, grid, args, meta, configs=None):
    """Run ``kernel`` on ``grid`` (or hand it to the compile target when one is installed)."""
    job = Launch(kernel, grid, tuple(args), dict(meta), tuple(configs or ()))
    if _target is not None:
        return _target.launch(job)
    if job.configs and backend.INTERPRET:
        # The interpreter cannot time configurations: run the first (the interpreter's own).
        cfg = job.configs[0]
        g = grid(cfg.kwargs) if callable(grid) else grid
        return untuned(kernel)[g](*job.args, **job.meta, **cfg.all_kwargs())
    return kernel[grid](*job.args, **job.meta)


def resources(kernel, grid, args, meta) -> Resources:
    """Compile ``kernel`` for these arguments (or take it from Triton's cache) without running it,
    and report the registers and shared memory one program uses: what decides how many programs
    fit on an SM at once."""
    job = Launch(kernel, grid, tuple(args), dict(meta))
    if _target is not None:
        return _target.resources(job)
    compiled = untuned(kernel).warmup(*job.args, grid=grid, **job.meta)
    compiled._init_handles()  # loads the binary: n_regs comes from the driver
    return Resources(int(compiled.n_regs), int(compiled.metadata.shared), int(compiled.metadata.num_warps))


@contextmanager
def compiling(target: Target):
    """Within the block every launch is compiled by ``target`` instead of run."""
    global _target
    previous, _target = _target, target
    try:
        yield target
    finally:
        _target = previous


def grid_size(grid, meta: dict) -> int:
    g: Callable | tuple = grid(meta) if callable(grid) else grid
    n = 1
    for d in g:
        n *= int(d)
    return n
