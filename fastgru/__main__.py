"""`python -m fastgru`: environment, a parity self-check of the kernels, a quick benchmark.

On a machine without CUDA the kernels are checked through Triton's interpreter (small shapes)
and the quick benchmark times PyTorch's CPU operators: fastgru's kernels are GPU kernels.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import platform
import sys

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import backend

# (name, T, B, I, H, layers, bidirectional, packed)
CPU_CASES = [
    ("uni", 8, 4, 16, 32, 1, False, False),
    ("bi-2layer", 5, 3, 10, 24, 2, True, False),
    ("packed", 6, 4, 8, 16, 1, True, True),
]
GPU_CASES = [
    ("uni", 64, 8, 128, 256, 1, False, False),
    ("bi-2layer", 32, 32, 64, 128, 2, True, False),
    ("packed", 48, 16, 64, 128, 1, True, True),
    ("large-H", 16, 2, 512, 1024, 1, False, False),
]


def environment() -> str:
    lines = [
        f"python  {platform.python_version()}",
        f"torch   {torch.__version__}",
    ]
    try:  # read the version without importing triton (that would fix the interpreter choice)
        lines.append(f"triton  {importlib.metadata.version('triton')}")
    except importlib.metadata.PackageNotFoundError:
        lines.append("triton  not installed (PyTorch fallback only)")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        lines.append(f"device  {p.name} ({p.multi_processor_count} SMs), CUDA {torch.version.cuda}")
    else:
        lines.append("device  CPU only: kernels checked through the Triton interpreter")
    return "\n".join(lines)


def parity_rows(device: str, dtypes) -> list[dict]:
    """fastgru.GRU vs nn.GRU in float64 (state_dict copied): worst relative error of the outputs
    and of all gradients, with nn.GRU's own error in the same dtype beside it."""
    from . import GRU
    from .launchers.tf32 import tf32_allowed
    from .testing import rel_error, tolerance

    cases = GPU_CASES if device == "cuda" else CPU_CASES
    rows = []
    for dtype in dtypes:
        for name, T, B, I, H, L, bi, packed in cases:
            torch.manual_seed(0)
            ref = nn.GRU(I, H, L, bidirectional=bi).to(device)
            ours = GRU(I, H, L, bidirectional=bi).to(device)
            ours.load_state_dict(ref.state_dict())
            x = torch.randn(T, B, I, device=device)
            lengths = torch.randint(1, T + 1, (B,)) if packed else None
            errs = {}
            for tag, model, dt in (("ref64", copy.deepcopy(ref).double(), torch.float64), ("ours", ours.to(dtype), dtype), ("torch", ref.to(dtype), dtype)):
                xi = x.to(dt).requires_grad_()
                inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
                out, h_n = model(inp)
                out = out.data if packed else out
                grads = torch.autograd.grad(out.float().sum() + h_n.float().square().sum(), [xi, *model.parameters()])
                errs[tag] = [out, h_n, *grads]
            def worst(tag, k0, k1):
                return max(rel_error(a, b) for a, b in zip(errs[tag][k0:k1], errs["ref64"][k0:k1]))
            tf32 = tf32_allowed(x.to(dtype), "cudnn")  # the library's TF32 rule, as nn.GRU follows cuDNN's flag
            rows.append({
                "case": name, "dtype": str(dtype).replace("torch.", ""), "shape": f"T{T} B{B} I{I} H{H} L{L}",
                "fwd": worst("ours", 0, 2), "fwd_torch": worst("torch", 0, 2),
                "bwd": worst("ours", 2, None), "bwd_torch": worst("torch", 2, None),
                "limit": tolerance(dtype, tf32),
            })
    return rows


def parity_table(rows) -> tuple[str, bool]:
    ok = True
    lines = [
        "| case | dtype | shape | fwd err | nn.GRU fwd err | bwd err | nn.GRU bwd err | limit | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        good = r["fwd"] <= r["limit"] and r["bwd"] <= r["limit"]
        ok &= good
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['shape']} | {r['fwd']:.2e} | {r['fwd_torch']:.2e} | "
            f"{r['bwd']:.2e} | {r['bwd_torch']:.2e} | {r['limit']:.0e} | {'yes' if good else 'NO'} |"
        )
    return "\n".join(lines), ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgru", description=__doc__)
    parser.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    args = parser.parse_args(argv)

    print(environment())
    cuda = torch.cuda.is_available()
    print("\n## Parity: fastgru.GRU vs nn.GRU (relative error against float64; forward, and worst gradient)\n")
    if cuda:
        rows = parity_rows("cuda", [torch.float32, torch.bfloat16])
    else:
        with backend.using("interpret"):
            rows = parity_rows("cpu", [torch.float32])
    table, ok = parity_table(rows)
    print(table)
    print("\nparity: " + ("PASS" if ok else "FAIL"))
    if not args.no_bench:
        from .bench import quick_table

        print("\n## Quick benchmark\n")
        print(quick_table(progress=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
