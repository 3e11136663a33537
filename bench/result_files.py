"""Result files: where a run's document is written, and the schema it is validated against.

One JSON document per run, at ``<out>/<device-slug>/<date>-<commit>.json`` (the document is
fastgru.bench.sweep's: {"schema": 2, "env": ..., "run": ..., "rows": [...]}; the row fields and
statuses are listed in fastgru/bench/runner.py). Schema 2 rows also carry the CUDA-graph form
(graphed_ms, graphed_p20_ms, graphed_p80_ms, graphed_rel_error, graphed_status, graphed_error) and
``headline``; schema 1 files (eager times only, as committed before) still validate and load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastgru.bench.sweep import SCHEMA

SCHEMAS = (1, SCHEMA)  # every schema this code reads; documents are written in SCHEMA
STATUSES = ("ok", "failed", "unavailable", "skipped", "oom", "error")
GRAPHED_STATUSES = ("ok", "failed", "unavailable", "skipped", "oom", "error")

_ROW_FIELDS = {
    "suite": str, "op": str, "mode": str, "provider": str, "dtype": str, "device": str, "shape": dict,
    "case_id": str, "status": str, "speedup": dict,
}
_ROW_NUMBERS = ("median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "gbytes_per_s",
                "peak_mem_bytes", "compile_s", "rel_error", "tolerance", "repeats")
_GRAPHED_NUMBERS = ("graphed_ms", "graphed_p20_ms", "graphed_p80_ms", "graphed_rel_error")
_HEADLINE_FORMS = ("eager", "graphed")
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
    schema = doc.get("schema")
    if schema not in SCHEMAS:
        errs.append(f"schema is {schema!r}, expected one of {SCHEMAS}")
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
        if schema != 1:
            errs += _graphed_errors(i, r)
    return errs


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _graphed_errors(i: int, r: dict) -> list[str]:
    """A schema-2 row's graphed form: present, and saying why whenever it has no time."""
    errs = []
    for k in _GRAPHED_NUMBERS:
        v = r.get(k, "absent")
        if v == "absent":
            errs.append(f"rows[{i}].{k} missing")
        elif v is not None and not _number(v):
            errs.append(f"rows[{i}].{k} is not a number or null")
    g = r.get("graphed_status", "absent")
    if r.get("status") == "ok":
        if g not in GRAPHED_STATUSES:
            errs.append(f"rows[{i}].graphed_status {g!r} not in {GRAPHED_STATUSES}")
        elif g == "ok":
            if not _number(r.get("graphed_ms")) or r["graphed_ms"] <= 0:
                errs.append(f"rows[{i}] is graphed ok but has no positive graphed_ms")
        else:
            if r.get("graphed_ms") is not None:
                errs.append(f"rows[{i}] is graphed {g} but carries a graphed time")
            if not r.get("graphed_error"):
                errs.append(f"rows[{i}] is graphed {g} but says no why (graphed_error)")
    elif g is not None or r.get("graphed_ms") is not None:
        errs.append(f"rows[{i}] is {r.get('status')} but carries a graphed status or time")
    head = r.get("headline", "absent")
    if not isinstance(head, dict):
        errs.append(f"rows[{i}].headline missing or not an object")
        return errs
    if head and r.get("status") != "ok":
        errs.append(f"rows[{i}] is {r.get('status')} but carries a headline")
    for b, h in head.items():
        if not isinstance(h, dict) or not _number(h.get("ratio")) or h["ratio"] <= 0:
            errs.append(f"rows[{i}].headline[{b!r}].ratio is not a positive number")
        elif h.get("form") not in _HEADLINE_FORMS or h.get("baseline_form") not in _HEADLINE_FORMS:
            errs.append(f"rows[{i}].headline[{b!r}] form/baseline_form not in {_HEADLINE_FORMS}")
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
