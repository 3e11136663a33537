"""Result files: where a run's document is written, and the schema it is validated against.

One JSON document per run, at ``<out>/<device-slug>/<date>-<commit>.json`` (the document is
fastgru.bench.sweep's: {"schema": 1, "env": ..., "run": ..., "rows": [...]}; the row fields and
statuses are listed in fastgru/bench/runner.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastgru.bench.sweep import SCHEMA

STATUSES = ("ok", "failed", "unavailable", "skipped", "oom", "error")

_ROW_FIELDS = {
    "suite": str, "op": str, "mode": str, "provider": str, "dtype": str, "device": str, "shape": dict,
    "case_id": str, "status": str, "speedup": dict,
}
_ROW_NUMBERS = ("median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "gbytes_per_s",
                "peak_mem_bytes", "compile_s", "rel_error", "tolerance", "repeats")
_ENV_FIELDS = ("device_name", "device_type", "sm_count", "driver", "cuda", "torch", "triton",
               "python", "commit", "date")


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
