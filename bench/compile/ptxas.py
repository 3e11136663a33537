"""What the compiled PTX says about a kernel: registers and spills (from ``ptxas -v``, the same
assembler Triton bundles), which matrix instructions it uses, and which approximate math."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter


def ptxas_path(arch: int) -> str:
    """Triton's bundled ptxas for ``arch``. get_ptxas returns a knobs.NvidiaTool (with .path) in
    Triton 3.6 and 3.9, a (path, version) pair in older releases."""
    from triton.backends.nvidia.compiler import get_ptxas

    tool = get_ptxas(arch)
    path = getattr(tool, "path", None)
    return path if path is not None else tool[0]


def gpu_name(arch: int) -> str:
    """Triton compiles Hopper for sm_90a (the wgmma instructions need the 'a' target)."""
    return "sm_90a" if arch == 90 else f"sm_{arch}"


def registers_and_spills(ptx: str, arch: int) -> tuple[int, int]:
    """(registers per thread, spill-store bytes per thread) of the kernel in ``ptx``; the
    largest over the functions ptxas reports (Triton inlines everything into one)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [ptxas_path(arch), "-v", f"--gpu-name={gpu_name(arch)}", src, "-o", os.path.join(tmp, "kernel.cubin")]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    regs = [int(n) for n in re.findall(r"Used (\d+) registers", done.stderr)]
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", done.stderr)]
    if not regs:
        raise RuntimeError(f"ptxas -v printed no register count:\n{done.stderr.strip()[-2000:]}")
    return max(regs), max(spills, default=0)


def mma_kind(ptx: str) -> str:
    """'wgmma' (Hopper warpgroup MMA), 'mma.sync' (Ampere-style tensor cores) or 'fma' (none)."""
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    if "mma.sync" in ptx:
        return "mma.sync"
    return "fma"


# Every PTX instruction that is not correctly rounded (or not IEEE): the .approx forms of ex2, lg2,
# rcp, rsqrt, sqrt, sin, cos, tanh and div (the compiled fp32 tl.exp is ex2.approx.f32 of x log2 e,
# tl.exp2 ex2.approx.ftz.f32), and div.full.f32 (fp32 "/": 2 ulp). Any type suffix (f32, f64,
# f16, bf16 and their x2 forms), with or without .ftz. The correctly rounded forms (div.rn,
# rcp.rn, sqrt.rn) and fma/mul/add never match.
_APPROX = re.compile(r"(?<![\w.])((?:ex2|lg2|rcp|rsqrt|sqrt|sin|cos|tanh|div)\.(?:approx|full)(?:\.ftz)?"
                     r"\.(?:f32|f64|f16x2|bf16x2|f16|bf16))(?![\w.])")


def approx_ops(ptx: str) -> dict:
    """{instruction: count} of the approximate math in ``ptx`` (see _APPROX), comments left out;
    empty when it has none."""
    code = "\n".join(line.split("//", 1)[0] for line in ptx.splitlines())
    return dict(sorted(Counter(_APPROX.findall(code)).items()))
