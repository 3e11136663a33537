"""A result document as Markdown: a header (machine, versions, run) and one table per suite."""

from __future__ import annotations

from collections import defaultdict

from .environment import CPU_NOTE

_SHAPE_ORDER = ("N", "B", "Tq", "T", "I", "H", "D", "A", "layers", "bidirectional", "packed")


def shape_text(shape: dict) -> str:
    parts = []
    for k in sorted(shape, key=lambda k: _SHAPE_ORDER.index(k) if k in _SHAPE_ORDER else 99):
        v = shape[k]
        if k == "bidirectional":
            parts.append("bidir" if v else "")
        elif k == "packed":
            parts.append("packed" if v else "")
        elif k == "layers" and v == 1:
            continue
        elif k == "I" and shape.get("H") == v:
            continue
        else:
            parts.append(f"{k}={v}")
    return " ".join(p for p in parts if p)


def _num(v, fmt="{:.3g}") -> str:
    return "" if v is None else fmt.format(v)


def _mib(v) -> str:
    return "" if v is None else f"{v / 2**20:.1f}"


def header(doc: dict) -> str:
    env, run = doc["env"], doc.get("run", {})
    lines = [
        f"# fastgru benchmark: {env['device_name']}",
        "",
        f"- date {env['date']}, commit `{env['commit']}`",
        f"- torch {env['torch']}, triton {env['triton']}, CUDA {env.get('cuda')}, driver {env.get('driver')}, "
        f"SMs {env.get('sm_count')}, python {env.get('python')}",
        f"- suite `{run.get('suite')}`, quick {run.get('quick')}, dtypes {run.get('dtypes')}, "
        f"{run.get('cases_run')} of {run.get('cases')} cases run in {run.get('elapsed_s')} s",
    ]
    if run.get("stopped_by_budget"):
        lines.append(f"- **stopped by the time budget ({run.get('budget_s')} s)**: "
                     f"{len(run.get('cases_not_run', []))} cases not started")
    if env.get("device_type") != "cuda":
        lines += ["", f"> **{CPU_NOTE}**"]
    lines += ["", "Times are medians (p20-p80) in ms; speedup = baseline time / this time; "
              "peak memory is the step's own allocation (CUDA only). Failed checks are never timed."]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    cols = ["op", "mode", "dtype", "shape", "provider", "median ms", "p20-p80", "tokens/s", "TFLOP/s",
            "peak MiB", "compile s", "rel err", "speedup", "status"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        speed = ", ".join(f"{v:.3g}x vs {b}" for b, v in (r.get("speedup") or {}).items())
        status = r["status"] if r["status"] == "ok" else f"**{r['status']}**: {r.get('error') or ''}"
        cells = [
            r["op"], r["mode"], r["dtype"], shape_text(r["shape"]), r["provider"] + (
                f" ({r['backend']})" if r.get("backend") else ""),
            _num(r["median_ms"], "{:.4g}"),
            "" if r["p20_ms"] is None else f"{r['p20_ms']:.4g}-{r['p80_ms']:.4g}",
            _num(r["tokens_per_s"], "{:.3g}"), _num(r["tflops"], "{:.3g}"), _mib(r["peak_mem_bytes"]),
            _num(r["compile_s"], "{:.1f}"), _num(r["rel_error"], "{:.1e}"), speed, status.replace("|", "/"),
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out)


def _by_case(rows: list[dict]) -> list[dict]:
    """Rows of one case together (a compile-only part runs at the end of its suite)."""
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r["case_id"], i)
    return sorted(rows, key=lambda r: first[r["case_id"]])


def markdown(doc: dict) -> str:
    """The whole report: header, then one table per suite."""
    parts = [header(doc)]
    by_suite = defaultdict(list)
    for r in doc["rows"]:
        by_suite[r["suite"]].append(r)
    for suite, rows in by_suite.items():
        parts += ["", f"## {suite}", "", table(_by_case(rows))]
    return "\n".join(parts) + "\n"
