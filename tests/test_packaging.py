"""The built wheel exposes fastgru.kernels, installs no top-level `kernels` module, and ships of the
benchmark harness only what `python -m fastgru` needs (the rest is the repository's bench/)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# fastgru.bench in the wheel: the quick GRU cases, the GRU providers, the checked timing, the table.
SHIPPED_BENCH = {
    "__init__.py", "cases.py", "environment.py", "flops.py", "gru_providers.py", "lstm_providers.py", "progress.py", "providers.py",
    "runner.py", "sweep.py", "table.py", "timing.py",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy of the sources: setuptools would also pack whatever a stale build/ in the
    # checkout still holds (files since moved or deleted).
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("fastgru", "kernels"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (path,) = out.glob("fastgru-*.whl")
    return path


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastgru/kernels/gru_forward.py" in names
    assert "fastgru/kernels/gru_backward.py" in names
    assert "fastgru/launchers/plan_table.json" in names, "the dispatcher's measured table must ship"
    assert not any(n.startswith("kernels/") for n in names), "a top-level kernels package must never ship"
    assert "fastgru/kernels/barrier_probe.py" not in names, "the barrier probe is benchmark-only (bench/)"
    assert not any(n.startswith("bench/") for n in names), "the repository's bench/ must never ship"
    bench = {n[len("fastgru/bench/"):] for n in names if n.startswith("fastgru/bench/")}
    assert bench == SHIPPED_BENCH, f"extra: {sorted(bench - SHIPPED_BENCH)}, missing: {sorted(SHIPPED_BENCH - bench)}"


def test_installed_wheel_imports_kernels(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (
        "import importlib.util, fastgru, fastgru.kernels.gru_forward as f, fastgru.bench.sweep, fastgru.bench.table; "
        "assert fastgru.__file__.startswith(%r), fastgru.__file__; "
        "assert importlib.util.find_spec('kernels') is None; "
        "from fastgru.launchers import plan_table; assert plan_table.load()['entries']; print('ok')" % str(target)
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_editable_checkout_imports_kernels():
    res = subprocess.run([sys.executable, "-c", "import fastgru.kernels.gru_cell; print('ok')"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
