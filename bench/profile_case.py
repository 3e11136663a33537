"""One recurrence for a profiler to read: the program bench/gpu_followup.sh runs under Nsight Compute.

    python -m bench.profile_case CASE          (CUDA: warm up, then one profiled run)
    python -m bench.profile_case --list        (the cases, no GPU)

Each case is one fastgru layer with its recurrence strategy forced (the kernel the goal table
times), at the goal's T = 512, one layer, one direction, input size = H. The program builds it,
draws random inputs (never zeros: they run faster and hide unwritten outputs), runs it twice to
compile and load every kernel, then brackets one more run with cudaProfilerStart/Stop, so a
profiler started with `--profile-from-start off` sees that run's kernels alone. A training case
runs the forward (saving) and the backward. Before profiling it checks the output is finite.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Case:
    family: str      # "gru" or "lstm"
    dtype: str       # a key of DTYPES
    mode: str        # "inference" or "training"
    B: int
    H: int
    T: int = 512
    strategy: str = "persistent"

    @property
    def name(self) -> str:
        return f"{self.family}-{self.dtype}-{self.mode}-B{self.B}-H{self.H}"

    @property
    def kernel_regex(self) -> str:
        """The kernels the profiler keeps: the forced strategy's recurrence kernels."""
        return f"regex:{self.family}_(fwd|bwd)_{self.strategy}"

    @property
    def launches(self) -> int:
        """Recurrence launches in one profiled run: the forward, and the backward in training."""
        return 2 if self.mode == "training" else 1


# In the order the follow-up profiles them (the most important first: a budget cut drops the tail).
CASES = {c.name: c for c in (
    Case("gru", "bf16", "inference", 1, 512),
    Case("gru", "bf16", "inference", 1, 1024),
    Case("gru", "bf16", "training", 8, 512),
    Case("lstm", "fp16", "inference", 16, 768),
)}


def build(case: Case, device="cuda"):
    """The module (its strategy forced) and a random (T, B, H) input in the case's dtype."""
    import fastgru

    layer = {"gru": fastgru.GRU, "lstm": fastgru.LSTM}[case.family]
    dtype = DTYPES[case.dtype]
    module = layer(case.H, case.H, strategy=case.strategy).to(device=device, dtype=dtype)
    x = torch.randn(case.T, case.B, case.H, device=device, dtype=dtype)
    return module, x


def run_once(module, x, mode: str) -> torch.Tensor:
    """One forward (and backward in training); the output, detached."""
    with torch.set_grad_enabled(mode == "training"):
        xin = x.detach().requires_grad_(mode == "training")
        out = module(xin)[0]
        if mode == "training":
            out.float().square().mean().backward()
    return out.detach()


def profile(case: Case) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(f"bench.profile_case: case {case.name!r} needs a CUDA device, and torch sees none")
    torch.manual_seed(0)
    module, x = build(case)
    if case.mode == "inference":
        module.eval()
    for _ in range(2):  # compile and load every kernel outside the profiled range
        out = run_once(module, x, case.mode)
    torch.cuda.synchronize()
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"bench.profile_case: case {case.name!r} produced a non-finite output; not profiling it")
    torch.cuda.profiler.start()
    run_once(module, x, case.mode)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print(f"profiled {case.name}: {case.launches} recurrence launch(es) matching {case.kernel_regex!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", nargs="?", help=f"one of {', '.join(CASES)}")
    p.add_argument("--list", action="store_true",
                   help="print each case's name, kernel filter and launch count (tab-separated) and exit")
    a = p.parse_args(argv)
    if a.list:
        for c in CASES.values():
            print(f"{c.name}\t{c.kernel_regex}\t{c.launches}")
        return 0
    if a.case not in CASES:
        p.error(f"case: expected one of {', '.join(CASES)}, got {a.case!r}")
    profile(CASES[a.case])
    return 0


if __name__ == "__main__":
    sys.exit(main())
