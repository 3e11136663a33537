"""The result file: its schema, where it is written, and a validator.

One JSON document per run, at ``<out>/<device-slug>/<date>-<commit>.json``:
  {"schema": 1, "env": {...machine and versions...}, "run": {...options, budget...}, "rows": [...]}
Rows are long-format (one per case and provider); see runner.py for the fields and statuses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

SCHEMA = 1
STATUSES = ("ok", "failed", "unavailable", "skipped", "oom", "error")
CPU_NOTE = (
    "CPU numbers. fastgru's Triton kernels need a CUDA GPU; on CPU fastgru runs PyTorch's own "
    "operators (backend 'torch'), so these rows say nothing about the kernels' speed."
)

_ROW_FIELDS = {
    "suite": str, "op": str, "mode": str, "provider": str, "dtype": str, "device": str, "shape": dict,
    "case_id": str, "status": str, "speedup": dict,
}
_ROW_NUMBERS = ("median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "gbytes_per_s",
                "peak_mem_bytes", "compile_s", "rel_error", "tolerance", "repeats")
_ENV_FIELDS = ("device_name", "device_type", "sm_count", "driver", "cuda", "torch", "triton",
               "python", "commit", "date")


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


def device_slug(env: dict) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(env["device_name"]).lower()).strip("-") or "unknown"


def result_path(out_dir, env: dict) -> Path:
    """<out>/<device-slug>/<date>-<commit>.json, with a numeric suffix if that name is taken."""
    folder = Path(out_dir) / device_slug(env)
    stem = f"{env['date'][:10]}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', env['commit'])}"
    path, n = folder / f"{stem}.json", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.json", n + 1
    return path


def document(env: dict, run: dict, rows: list[dict]) -> dict:
    return {"schema": SCHEMA, "env": env, "run": run, "rows": rows}


def validate(doc) -> list[str]:
    """Every way ``doc`` departs from the schema (an empty list when it is valid)."""
    errs = []
    if not isinstance(doc, dict):
        return ["document is not an object"]
    if doc.get("schema") != SCHEMA:
        errs.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA}")
    env, run, rows = doc.get("env"), doc.get("run"), doc.get("rows")
    if not isinstance(env, dict):
        errs.append("env missing or not an object")
    else:
        errs += [f"env.{k} missing" for k in _ENV_FIELDS if k not in env]
    if not isinstance(run, dict):
        errs.append("run missing or not an object")
    if not isinstance(rows, list):
        return errs + ["rows missing or not a list"]
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            errs.append(f"rows[{i}] is not an object")
            continue
        for k, typ in _ROW_FIELDS.items():
            if not isinstance(r.get(k), typ):
                errs.append(f"rows[{i}].{k} missing or not {typ.__name__}")
        for k in _ROW_NUMBERS:
            v = r.get(k, "absent")
            if v == "absent":
                errs.append(f"rows[{i}].{k} missing")
            elif v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                errs.append(f"rows[{i}].{k} is not a number or null")
        status = r.get("status")
        if status not in STATUSES:
            errs.append(f"rows[{i}].status {status!r} not in {STATUSES}")
        elif status == "ok":
            if not isinstance(r.get("median_ms"), (int, float)) or r["median_ms"] <= 0:
                errs.append(f"rows[{i}] is ok but has no positive median_ms")
        else:
            if r.get("median_ms") is not None or r.get("speedup"):
                errs.append(f"rows[{i}] is {status} but carries a timing or speedup")
            if not r.get("error"):
                errs.append(f"rows[{i}] is {status} but says no why (error)")
        for b, v in (r.get("speedup") or {}).items():
            if not isinstance(v, (int, float)) or v <= 0:
                errs.append(f"rows[{i}].speedup[{b!r}] is not a positive number")
    return errs


class SchemaError(ValueError):
    pass


def check(doc) -> dict:
    errs = validate(doc)
    if errs:
        raise SchemaError("invalid result file: " + "; ".join(errs[:10]) + (" ..." if len(errs) > 10 else ""))
    return doc


def _finite(obj):
    """JSON has no NaN or infinity: such numbers (e.g. the error of a NaN output) become null."""
    if isinstance(obj, float) and obj != obj or obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write(doc: dict, out_dir) -> Path:
    """Validate and write the document; return its path."""
    doc = check(_finite(doc))
    path = result_path(out_dir, doc["env"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path


def load(path) -> dict:
    return check(json.loads(Path(path).read_text()))
