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
    return done, rows


def test_quick_compile_check_passes(quick_report):
    done, _ = quick_report
    tail = "\n".join(done.stderr.splitlines()[-40:])
    assert done.returncode == 0, f"python -m bench.compile --quick exited {done.returncode}:\n{tail}"


def test_every_kernel_compiles_in_every_dtype(quick_report):
    _, rows = quick_report
    assert rows, "the compile check wrote no rows"
    expected = fastgru_kernels()
    # 8 GRU kernels (rows, stepwise, persistent, cell), 3 attention kernels (one family for both
    # scores) and the decoder's forward and backward.
    assert len(expected) >= 13, f"kernel discovery found too few kernels: {sorted(expected)}"
    for dtype in ("bf16", "fp16", "fp32-tf32", "fp32-ieee", "fp64"):
        ok = {r["kernel"] for r in rows if r["dtype"] == dtype and r["status"] == "ok"}
        assert not expected - ok, f"{dtype}: not compiled ok: {sorted(expected - ok)}"
    failed = [f"{r['kernel']} {r['dtype']}: {r['error'][:300]}" for r in rows if r["status"] != "ok"]
    assert not failed, "\n".join(failed)


def test_rows_carry_what_ptxas_and_the_ptx_say(quick_report):
    _, rows = quick_report
    for r in rows:
        if r["status"] != "ok":
            continue
        where = f"{r['kernel']} {r['dtype']}"
        assert 0 < r["registers"] <= 255, where
        assert r["spill_bytes"] >= 0 and r["shared_bytes"] >= 0, where
        assert r["mma"] in ("wgmma", "mma.sync", "fma"), where
        assert r["config"].get("num_warps") in (1, 2, 4, 8, 16), where
    # The recurrence's h @ W_hh in bf16/fp16 must reach the tensor cores, never plain FMA.
    lowp_fwd = [r for r in rows if r["dtype"] in ("bf16", "fp16") and r["kernel"].startswith("gru_fwd")]
    assert lowp_fwd and all(r["mma"] in ("wgmma", "mma.sync") for r in lowp_fwd), [
        (r["kernel"], r["dtype"], r["mma"]) for r in lowp_fwd
    ]
