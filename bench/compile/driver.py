"""A stand-in Triton driver that names a GPU this machine does not have.

Triton compiles for whatever ``driver.active.get_current_target()`` says, and ``warmup`` goes
down to a cubin (it bundles ptxas) without launching. So with this driver active the real
compiler runs for sm_90 or sm_80 on a CPU-only machine. It must be installed before any kernel
module is imported, with ``TRITON_INTERPRET`` unset: ``triton.jit`` reads it when it decorates.
"""

from __future__ import annotations

import os
import sys


class StandInDriver:
    """What Triton 3.6 and 3.9 ask of the active driver to compile (not to launch)."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    @staticmethod
    def is_active() -> bool:
        return True

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        return 0

    def set_current_device(self, device) -> None:
        pass

    def get_current_stream(self, device=None) -> int:
        return 0

    def __getattr__(self, name):
        # utils (load_binary), launcher_cls, get_benchmarker...: only a real launch needs them.
        raise AttributeError(
            f"the compile check's stand-in driver has no {name!r}: Triton asked for something that "
            "needs a real GPU (a launch or a benchmark), which the compile check never does"
        )


def install(arch: int) -> StandInDriver:
    """Make Triton compile for ``arch`` (90, 80). Refuses when a kernel module is already imported
    (it would be an interpreted function) or the interpreter was asked for."""
    loaded = [m for m in sys.modules if m == "fastgru.kernels" or m.startswith("fastgru.kernels.")]
    if loaded:
        raise RuntimeError(
            f"bench.compile: kernel modules were imported before the stand-in driver ({', '.join(sorted(loaded))}); "
            "run it in a fresh interpreter (python -m bench.compile)"
        )
    os.environ.pop("TRITON_INTERPRET", None)
    if os.environ.get("FASTGRU_BACKEND", "").strip().lower() == "interpret":
        os.environ.pop("FASTGRU_BACKEND")  # backend.py would switch the interpreter back on
    from triton.runtime.driver import driver

    stand_in = StandInDriver(arch)
    driver.set_active(stand_in)
    return stand_in
