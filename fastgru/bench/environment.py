"""The machine and software versions a benchmark run was taken on (the ``env`` of its document)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

import torch

CPU_NOTE = (
    "CPU numbers. fastgru's Triton kernels need a CUDA GPU; on CPU fastgru runs PyTorch's own "
    "operators (backend 'torch'), so these rows say nothing about the kernels' speed."
)


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        return out or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(repo: str | os.PathLike | None = None) -> str:
    """Short commit of fastgru's checkout ('+dirty' when it has changes), or 'nogit'.

    Looks where the package lives first (an editable install), then in the current directory.
    """
    places = [str(repo)] if repo else [str(Path(__file__).resolve().parents[2]), "."]
    for cwd in places:
        commit = _run(["git", "-C", cwd, "rev-parse", "--short=10", "HEAD"])
        if commit:
            dirty = _run(["git", "-C", cwd, "status", "--porcelain", "--untracked-files=no"])
            return commit + ("+dirty" if dirty else "")
    return "nogit"


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment(device, commit: str | None = None) -> dict:
    """The machine and software versions a run was taken on."""
    device = torch.device(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # pragma: no cover
        triton_version = None
    env = {
        "device_type": device.type,
        "device_name": None,
        "sm_count": None,
        "cpu_count": os.cpu_count(),
        "driver": None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["device_name"] = props.name
        env["sm_count"] = props.multi_processor_count
        env["memory_bytes"] = props.total_memory
        env["driver"] = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        if env["driver"]:
            env["driver"] = env["driver"].splitlines()[0]
        env["tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    else:
        env["device_name"] = f"CPU {cpu_name()}"
        env["note"] = CPU_NOTE
    return env
