"""The built wheel exposes fastgru.kernels and installs no top-level `kernels` module."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (path,) = out.glob("fastgru-*.whl")
    return path


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastgru/kernels/gru_forward.py" in names
    assert "fastgru/kernels/gru_backward.py" in names
    assert not any(n.startswith("kernels/") for n in names), "a top-level kernels package must never ship"


def test_installed_wheel_imports_kernels(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (
        "import importlib.util, fastgru, fastgru.kernels.gru_forward as f; "
        "assert fastgru.__file__.startswith(%r), fastgru.__file__; "
        "assert importlib.util.find_spec('kernels') is None; print('ok')" % str(target)
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_editable_checkout_imports_kernels():
    res = subprocess.run([sys.executable, "-c", "import fastgru.kernels.gru_cell; print('ok')"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
