"""The GPU follow-up without a GPU: bench/profile_case.py's cases (each names kernels that exist,
builds its module with the strategy forced, refuses to run without CUDA) and
bench/gpu_followup.sh's dry run (one ncu command per case, the profiled run alone, clocks left
alone)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's bench/ package (not installed)
    sys.path.insert(0, str(ROOT))

from bench import profile_case as P  # noqa: E402


def _kernel_names(family: str) -> set[str]:
    source = (ROOT / "kernels" / f"{family}_persistent.py").read_text()
    return set(re.findall(r"^def (\w+_kernel)\(", source, flags=re.M))


@pytest.mark.parametrize("name", list(P.CASES))
def test_each_case_filters_the_kernels_its_run_launches(name):
    case = P.CASES[name]
    pattern = re.compile(case.kernel_regex.removeprefix("regex:"))
    matched = sorted(k for k in _kernel_names(case.family) if pattern.search(k))
    want = ["fwd"] + (["bwd"] if case.mode == "training" else [])
    # the forward, and in training the backward: a renamed kernel would leave the profiler nothing
    assert [m for m in want if any(f"_{m}_" in k for k in matched)] == want, matched
    assert case.launches == len(want)


@pytest.mark.parametrize("name", list(P.CASES))
def test_each_case_builds_its_module_with_the_strategy_forced(name):
    case = P.CASES[name]
    small = P.Case(case.family, case.dtype, case.mode, case.B, 8, T=3, strategy=case.strategy)
    module, x = P.build(small, device="cpu")
    assert module.strategy == case.strategy == "persistent"
    assert x.shape == (3, case.B, 8) and x.dtype == P.DTYPES[case.dtype]
    assert {p.dtype for p in module.parameters()} == {P.DTYPES[case.dtype]}
    assert bool(x.abs().sum() > 0)  # random, never zeros


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_profile_case_refuses_without_cuda():
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        P.main(["gru-bf16-inference-B1-H512"])
    with pytest.raises(SystemExit):
        P.main(["no-such-case"])


def test_followup_dry_run_profiles_every_case_alone(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), GPU_FOLLOWUP_DRY_RUN="1")
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_followup.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if "--export" in line]
    assert len(commands) == len(P.CASES)
    for line, case in zip(commands, P.CASES.values()):
        assert f"bench.profile_case {case.name}" in line and f"-c {case.launches} " in line
        assert "--profile-from-start off" in line and "--clock-control none" in line
        assert f"--export {tmp_path}/{case.name} " in line
    assert (tmp_path / "followup.log").read_text().count("--export") == len(P.CASES)
