"""Hidden sizes below the tensor cores' minimum tile (H = 1..16): every plan the dispatcher can
pick compiles for sm_90 and runs.

A tensor-core dot needs M, N, K >= 16 on the GPU (the interpreter accepts any shape), so a GPU
plan must pad every tile to 16; and a candidate the compiler refuses while the dispatcher sizes
it means "does not fit", never an exception for the user. The compile half runs the
``gru-small`` case family of ``python -m bench.compile`` in a fresh interpreter (the stand-in
driver must be set before any kernel is imported) and records the plan the dispatcher picked for
an H100 at every case; the run half executes exactly those plans here, under the interpreter,
against the float64 reference.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgru import functional, gpu, reference
from fastgru.launchers import gru_cell as AC
from fastgru.launchers import gru_layer as AG
from fastgru.launchers import launch as L
from fastgru.launchers import plan as planner
from fastgru.testing import check_close

ROOT = Path(__file__).resolve().parents[1]
SMALL_H = range(1, 17)


@pytest.mark.parametrize("H", SMALL_H)
@pytest.mark.parametrize("B", [1, 3, 40])
def test_persistent_tiles_meet_the_mma_minimum(B, H):
    """K spans all of H padded: H <= 8 gave K = 1..8, which the GPU compiler rejects."""
    for p in planner.persistent_candidates(B, H, 2):
        assert min(p.block_b, p.block_h, p.block_k) >= 16, p
        assert p.block_k >= H and p.hidden_blocks * p.block_h >= H


@pytest.mark.parametrize("H", SMALL_H)
@pytest.mark.parametrize("strategy", ["rows", "stepwise"])
def test_row_and_step_tiles_meet_the_mma_minimum(strategy, H):
    for p in planner.tile_candidates(strategy, 3, H):
        assert min(p.block_b, p.block_h, p.block_k) >= 16, p


class _Refused:
    """A kernel whose compile fails the way the GPU compiler refuses a too-small dot."""

    __name__ = "refused_kernel"

    def __init__(self, exc):
        self.exc = exc

    def warmup(self, *args, **kwargs):
        raise self.exc


def _compile_error():
    from triton.compiler.errors import CompilationError

    return CompilationError(None, ast.Pass(), "Input shapes should have M >= 16, N >= 16 and K >= 16")


def test_a_candidate_the_compiler_refuses_does_not_fit(monkeypatch):
    monkeypatch.setattr(L, "_resources_seen", {})
    assert L.resources(_Refused(_compile_error()), (1,), [3, 5], {"BLOCK_H": 4}) is None


def test_a_refused_persistent_candidate_falls_back(monkeypatch):
    """The dispatcher, sizing candidates whose compile fails, plans another strategy."""
    monkeypatch.setattr(L, "_resources_seen", {})
    with gpu.assume_gpu(132):
        fit = lambda p: L.resources(_Refused(_compile_error()), (1,), [p.block_k], p.blocks())  # noqa: E731
        plan = planner.plan_gru(3, 8, 1, "cpu", None, torch.bfloat16, resources=fit)
    assert plan.strategy == "rows"


# The compile half: bench.compile's gru-small family for sm_90, recording the dispatcher's picks.
_PICKS = r"""
import dataclasses, json, sys
from bench.compile import driver
driver.install(90)
import torch
from fastgru import gpu
from fastgru.launchers import gru_cell as AC, gru_layer as AG
from fastgru.launchers.launch import compiling
from bench.compile import cases
from bench.compile.target import CompileTarget, arch

a = arch(90)
target = CompileTarget(a)  # exact: H = 1, 16 and the others are three binaries
picks = []

def recording(module, kind):
    real = module.plan_gru
    def plan_gru(B, H, D, device, strategy=None, dtype=torch.float32, resources=None, **kw):
        plan = real(B, H, D, device, strategy, dtype, resources=resources, **kw)
        picks.append(dict(kind=kind, dtype=target.label["dtype"], B=B, H=H, D=D, plan=dataclasses.asdict(plan)))
        return plan
    module.plan_gru = plan_gru

recording(AG, "layer")
recording(AC, "cell")
with gpu.assume_gpu(a.sms, a.limits), compiling(target):
    grid = dataclasses.replace(cases.QUICK, small_h=tuple(range(1, 17)))
    cases.run_all(target, grid, tuple(cases.DTYPES), ("gru-small",))
json.dump(dict(picks=picks, rows=target.rows), open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def gpu_picks(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "picks.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGRU_BACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", _PICKS, str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.compile
def test_every_small_h_pick_compiles_for_sm90(gpu_picks):
    rows = gpu_picks["rows"]
    assert {r["shape"]["H"] for r in rows} == set(SMALL_H)
    failed = sorted({f"{r['kernel']} {r['dtype']} H={r['shape']['H']}: {r['error'][:300]}"
                     for r in rows if r["status"] != "ok"})
    assert not failed, "\n".join(failed)
    lowp = {r["strategy"] for r in rows if r["dtype"] in ("bf16", "fp16") and not r["probe"] and r["strategy"] != "cell"}
    assert lowp == {"persistent"}, "bf16/fp16 at small H should run the persistent kernel once it compiles"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32-ieee": torch.float32, "fp64": torch.float64}


def _runs(picks):
    """(kind, dtype, H, D, forward plan, backward plan) per case, each distinct run once: where
    the layer's plans at D = 1 are those of D = 2, only D = 2 runs (its forward direction is the
    D = 1 run, program for program)."""
    by_case = {}
    for p in picks:
        if p["dtype"] in _DTYPES:
            by_case.setdefault((p["kind"], p["dtype"], p["H"], p["D"]), []).append(planner.GRUPlan(**p["plan"]))
    runs = {(kind, _DTYPES[label], H, D, *plans[:2]) for (kind, label, H, D), plans in by_case.items()}
    return {r for r in runs if not (r[0] == "layer" and r[3] == 1 and ("layer", *r[1:3], 2, *r[4:]) in runs)}


def _replaying(monkeypatch, module, plans):
    """Make ``module``'s plan_gru return ``plans`` in order (forward, then backward)."""
    queue = list(plans)
    monkeypatch.setattr(module, "plan_gru", lambda *args, **kwargs: queue.pop(0))
    return queue


@pytest.mark.compile
def test_every_small_h_pick_runs(gpu_picks, monkeypatch):
    """The H100's plans, executed under the interpreter, forward and backward, against float64."""
    runs = sorted(_runs(gpu_picks["picks"]), key=str)
    recorded = {(p["kind"], p["dtype"], p["H"], p["D"]) for p in gpu_picks["picks"] if p["dtype"] in _DTYPES}
    assert len(recorded) == len(SMALL_H) * len(_DTYPES) * 3  # the layer at D = 1 and 2, the cell
    assert {(kind, H) for kind, _, H, *_ in runs} == {(kind, H) for kind in ("layer", "cell") for H in SMALL_H}
    for kind, dtype, H, D, fwd, bwd in runs:
        with monkeypatch.context() as m:
            if kind == "layer":
                queue = _replaying(m, AG, [fwd, bwd])
                layer_against_reference(2, 3, 5, H, D, dtype)
            else:
                queue = _replaying(m, AC, [fwd, bwd])
                cell_against_reference(H, dtype)
            assert not queue, f"{kind} H={H} D={D} {dtype}: the launcher planned fewer times than recorded"


def _leaves(dtype, *shapes):
    """Random leaves in ``dtype`` and the same values in float64: the reference sees exactly the
    kernel's inputs, so the error measured is the computation's, not the inputs' rounding (at
    H = 1..3 a handful of elements make the latter alone exceed the bf16 limit by chance)."""
    ours = [(torch.randn(s, dtype=torch.float64) * 0.4).to(dtype).requires_grad_() for s in shapes]
    return ours, [t.detach().double().requires_grad_() for t in ours]


def _compare(ours_fn, ref_fn, ours, ref, dtype, what):
    outs, refs = ours_fn(*ours), ref_fn(*ref)
    gen = torch.Generator().manual_seed(0)
    gs = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]
    grads = torch.autograd.grad(sum((o * g.to(o.dtype)).sum() for o, g in zip(outs, gs)), ours)
    grads64 = torch.autograd.grad(sum((r * g).sum() for r, g in zip(refs, gs)), ref)
    for i, (a, b) in enumerate(zip(outs, refs)):
        check_close(a, b, dtype, name=f"{what} output {i}")
    for i, (a, b) in enumerate(zip(grads, grads64)):
        check_close(a, b, dtype, name=f"{what} grad {i}")


def layer_against_reference(T, B, I, H, D, dtype, reset_after=True):
    """One layer (D directions) forward and backward through fastgru.functional.gru against
    fastgru.reference in float64."""
    shapes = [(T, B, I), (D, B, H)] + [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)] * D
    ours, ref = _leaves(dtype, *shapes)

    def run(fn):
        return lambda x, h0, *w: fn(x, h0, [list(w[4 * d : 4 * d + 4]) for d in range(D)], 1, D == 2, None,
                                    reset_after=reset_after)

    kernel = lambda x, h0, ws, L, bi, lengths, reset_after: functional.gru(  # noqa: E731
        x, h0, ws, L, bi, False, lengths=lengths, reset_after=reset_after)
    _compare(run(kernel), run(reference.gru), ours, ref, dtype, f"layer T={T} B={B} H={H} D={D} {dtype}")


def cell_against_reference(H, dtype, B=3, I=5):
    ours, ref = _leaves(dtype, (B, I), (B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,))
    _compare(lambda *a: (functional.gru_cell(*a),), lambda *a: (reference.gru_cell(*a),), ours, ref, dtype,
             f"cell B={B} H={H} {dtype}")
