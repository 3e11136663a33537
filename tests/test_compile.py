"""The ahead-of-time compile check in its quick form: every kernel compiles for sm_90 (H100),
with the real compiler, at the dispatcher's own plans. The interpreter accepts code the compiler
rejects, so without this CI would never see a kernel that does not build.

It runs ``python -m bench.compile --quick`` in a fresh interpreter: the stand-in driver must be
set before any kernel is imported, and this suite runs with TRITON_INTERPRET=1.
Deselect with ``-m "not compile"``.
"""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastgru.kernels
from bench.compile import cases, report
from bench.compile.ptxas import approx_ops

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.compile


def fastgru_kernels() -> set:
    """Every kernel a launcher can launch: the autotuned ones, and the jitted ``*_kernel``
    functions (the other jitted functions are device helpers inlined into these)."""
    names = set()
    for mod in pkgutil.iter_modules(fastgru.kernels.__path__):
        module = importlib.import_module(f"fastgru.kernels.{mod.name}")
        for name, obj in vars(module).items():
            autotuned = hasattr(obj, "configs") and hasattr(obj, "fn")
            if not name.startswith("_") and (autotuned or (name.endswith("_kernel") and hasattr(obj, "fn"))):
                names.add(name)
    return names


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGRU_BACKEND")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.compile", "--arch", "90", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    rows = json.loads((out / "compile-sm90.json").read_text()) if (out / "compile-sm90.json").exists() else []
    md = (out / "compile-sm90.md").read_text() if (out / "compile-sm90.md").exists() else ""
    return done, rows, md


def test_quick_compile_check_passes(quick_report):
    done, _, _ = quick_report
    tail = "\n".join(done.stderr.splitlines()[-40:])
    assert done.returncode == 0, f"python -m bench.compile --quick exited {done.returncode}:\n{tail}"


def test_every_kernel_compiles_in_every_dtype(quick_report):
    _, rows, _ = quick_report
    assert rows, "the compile check wrote no rows"
    expected = fastgru_kernels()
    # 8 GRU kernels (rows, stepwise, persistent, cell), 3 attention kernels (one family for both
    # scores) and the decoder's forward and backward.
    assert len(expected) >= 13, f"kernel discovery found too few kernels: {sorted(expected)}"
    for dtype in ("bf16", "fp16", "fp32-tf32", "fp32-ieee", "fp64"):
        ok = {r["kernel"] for r in rows if r["dtype"] == dtype and r["status"] == "ok"}
        # The LSTM's kernels compile in the quick form's LSTM dtypes only (cases.QUICK.lstm_dtypes).
        wanted = {k for k in expected if not k.startswith("lstm_") or dtype in cases.QUICK.lstm_dtypes}
        assert not wanted - ok, f"{dtype}: not compiled ok: {sorted(wanted - ok)}"
    failed = [f"{r['kernel']} {r['dtype']}: {r['error'][:300]}" for r in rows if r["status"] != "ok"]
    assert not failed, "\n".join(failed)


def test_rows_carry_what_ptxas_and_the_ptx_say(quick_report):
    _, rows, _ = quick_report
    for r in rows:
        if r["status"] != "ok":
            continue
        where = f"{r['kernel']} {r['dtype']}"
        assert 0 < r["registers"] <= 255, where
        assert r["spill_bytes"] >= 0 and r["shared_bytes"] >= 0, where
        assert r["mma"] in ("wgmma", "mma.sync", "fma"), where
        assert r["config"].get("num_warps") in (1, 2, 4, 8, 16), where
    # The recurrence's h @ W_hh in bf16/fp16 must reach the tensor cores, never plain FMA.
    lowp_fwd = [r for r in rows if r["dtype"] in ("bf16", "fp16") and r["kernel"].startswith(("gru_fwd", "lstm_fwd"))]
    assert lowp_fwd and all(r["mma"] in ("wgmma", "mma.sync") for r in lowp_fwd), [
        (r["kernel"], r["dtype"], r["mma"]) for r in lowp_fwd
    ]


def test_lstm_families_in_the_quick_form(quick_report):
    """The LSTM's quick form: the layer at the dispatcher's pick and with every strategy forced,
    with and without proj_size, and the cell, each forward and backward; every kernel the
    launchers use ran, the persistent ones on the tensor cores, and none spills."""
    _, rows, _ = quick_report
    lstm = [r for r in rows if r["kernel"].startswith("lstm_") and not r["probe"]]
    assert {r["dtype"] for r in lstm} == set(cases.QUICK.lstm_dtypes)
    for proj in (False, True):
        layer = [r for r in lstm if "cell" not in r["kernel"] and ("P" in r["shape"]) == proj]
        ran = {(r["strategy"], r["pass"]) for r in layer if r["status"] == "ok"}
        assert ran >= {(s, p) for s in ("rows", "stepwise", "persistent") for p in ("forward", "backward")}, (proj, ran)
        assert {r["pick"] for r in layer} == {"dispatcher", "forced"}
    assert any(r["kernel"] == "lstm_fwd_proj_kernel" and r["strategy"] == "stepwise" for r in lstm)
    assert {r["kernel"] for r in lstm if "cell" in r["kernel"]} == {"lstm_cell_fwd_kernel", "lstm_cell_bwd_kernel"}
    persistent = [r for r in lstm if "persistent" in r["kernel"]]
    assert persistent and all(r["mma"] in ("wgmma", "mma.sync") for r in persistent)
    assert not [(r["kernel"], r["shape"], r["spill_bytes"]) for r in lstm if r["status"] == "ok" and r["spill_bytes"]]


def test_approximate_math_column_and_gate(quick_report):
    """Every compiled row lists its approximate fp32 math, the report shows it as a column, and
    no row whose contract needs precise math (report.PRECISE_MATH) has any."""
    _, rows, md = quick_report
    assert "| approx fp math |" in md and "approximate fp math anywhere:" in md
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(isinstance(r["approx"], dict) for r in ok)
    gated = [r for r in ok if report.needs_precise_math(r)]
    assert {r["dtype"] for r in gated} == {"fp32-ieee", "fp32-tf32", "fp64"}
    assert any(r["kernel"].startswith("decoder_") and r["dtype"] == "fp32-tf32" for r in gated)
    bad = [(r["kernel"], r["dtype"], r["approx"]) for r in gated if r["approx"]]
    assert not bad, bad


def _row(kernel, dtype, approx):
    return dict(kernel=kernel, strategy="rows", dtype=dtype, shape=dict(B=8), config={}, status="ok", error="",
                shared_bytes=0, registers=64, spill_bytes=0, mma="fma", approx=approx, pick="dispatcher",
                probe=False)


def test_problems_fails_on_approximate_math_where_precise_is_needed():
    ex2 = {"ex2.approx.f32": 3}
    bad = report.problems([_row("gru_fwd_rows_kernel", "fp32-ieee", ex2)], 232448)
    assert len(bad) == 1 and "ex2.approx.f32 x3" in bad[0] and "gru_fwd_rows_kernel fp32-ieee" in bad[0]
    for kernel, dtype in (("gru_bwd_rows_kernel", "fp64"), ("decoder_fwd_kernel", "fp32-tf32"),
                          ("attention_fwd", "fp32-ieee"), ("gru_fwd_persistent_kernel", "fp32-tf32")):
        assert report.problems([_row(kernel, dtype, {"div.full.f32": 1})], 232448), (kernel, dtype)
    # Reported, not fatal: 16-bit rows, plain-TF32 cell and attention rows, and rows without any.
    for kernel, dtype, approx in (("gru_fwd_rows_kernel", "bf16", ex2), ("gru_fwd_rows_kernel", "fp16", ex2),
                                  ("gru_cell_fwd_kernel", "fp32-tf32", ex2), ("attention_fwd", "fp32-tf32", ex2),
                                  ("gru_fwd_rows_kernel", "fp32-ieee", {})):
        assert not report.problems([_row(kernel, dtype, approx)], 232448), (kernel, dtype)
    md = report.markdown(90, [_row("gru_fwd_rows_kernel", "fp32-ieee", ex2), _row("gru_fwd_rows_kernel", "bf16", ex2)],
                         [], dict(form="quick", triton="x", torch="x", gpu="x", seconds=0, shared_limit=232448))
    assert "verdict: FAIL" in md and "| **ex2.approx.f32 x3** |" in md and "| ex2.approx.f32 x3 |" in md


def test_approx_ops_reads_the_ptx():
    ptx = """
    ex2.approx.f32 %f1, %f2;
    @%p1 ex2.approx.ftz.f32 %f3, %f4;
    div.full.f32 %f5, %f6, %f7; // div.approx.f32 in a comment is not code
    div.rn.f32 %f5, %f6, %f7;
    rcp.approx.ftz.f64 %fd1, %fd2;
    fma.rn.f32 %f1, %f2, %f3, %f4;
    ex2.approx.f32 %f8, %f9;
    """
    assert approx_ops(ptx) == {"div.full.f32": 1, "ex2.approx.f32": 2, "ex2.approx.ftz.f32": 1, "rcp.approx.ftz.f64": 1}
    assert approx_ops("div.rn.f64 %fd1, %fd2, %fd3;\nsqrt.rn.f32 %f1, %f2;") == {}
