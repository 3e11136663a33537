"""Every kernel launch of fastgru goes through ``launch``; ``resources`` tells what a launch's
compiled kernel uses. The launchers (this folder, one file per op family) build each kernel's
arguments in one place and hand them here, so the same code both runs a kernel and, under
``compiling`` (the ahead-of-time compile check, ``python -m bench.compile``), compiles it for a
target GPU without running anything.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from .. import backend, gpu


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
    spill_bytes: int = 0  # local memory per thread
    resident: Optional[int] = None  # programs one SM holds at once, by the driver's occupancy query (None: no driver)


class Target(Protocol):
    """What ``compiling`` installs: compile instead of launch."""

    def launch(self, launch: Launch) -> Any: ...

    def resources(self, launch: Launch) -> Optional[Resources]: ...


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


_resources_seen: dict = {}


def _specialization(arg):
    """What Triton compiles a kernel for, per argument: a tensor's dtype and device, an int's
    class (1, a multiple of 16, other); so launches that share a binary share a cache entry."""
    if hasattr(arg, "dtype") and hasattr(arg, "device"):
        return (arg.dtype, arg.device)
    if isinstance(arg, bool) or not isinstance(arg, int):
        return arg if arg is None or isinstance(arg, (bool, str)) else type(arg).__name__
    return 1 if arg == 1 else (16 if arg % 16 == 0 else 0)


def resources(kernel, grid, args, meta) -> Optional[Resources]:
    """Compile ``kernel`` for these arguments (or take it from Triton's cache) without running it,
    and report what one program holds on an SM and how many programs the driver says one SM
    holds at once: what decides how many programs fit at once. None when the kernel does not
    fit: it cannot run on this device (too much shared memory, too many threads) or the
    compiler refuses it (an MMA tile below the minimum, a failed pass). The dispatcher asks
    this only of candidate plans, so a compile error here means "try another", never an error
    for the user; a launch that is not a candidate compiles when it runs, and raises there."""
    job = Launch(kernel, grid, tuple(args), dict(meta))
    if _target is not None:
        return _target.resources(job)
    key = (job.name, tuple(map(_specialization, job.args)), tuple(sorted(job.meta.items())))
    if key not in _resources_seen:
        _resources_seen[key] = _compiled_resources(job)
    return _resources_seen[key]


def _compile_errors() -> tuple:
    """What the compiler raises for a kernel it will not build: its front end's CompilationError,
    ptxas' PTXASError, OutOfResources on loading, and the RuntimeError of a failed MLIR pass."""
    from triton.compiler.errors import CompilationError  # imported on use (backend.py)
    from triton.runtime.errors import OutOfResources, PTXASError

    return CompilationError, PTXASError, OutOfResources, RuntimeError


def _compiled_resources(job: Launch) -> Optional[Resources]:
    try:
        compiled = untuned(job.kernel).warmup(*job.args, grid=job.grid, **job.meta)
        compiled._init_handles()  # loads the binary: registers and local memory come from the driver
    except _compile_errors():
        return None
    num_warps = int(compiled.metadata.num_warps)
    shared = int(compiled.metadata.shared)
    return Resources(int(compiled.n_regs), shared, num_warps, 4 * int(compiled.n_spills),
                     resident=gpu.max_active_blocks(getattr(compiled, "function", None), 32 * num_warps, shared))


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
