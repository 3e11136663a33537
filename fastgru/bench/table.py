"""A result document as Markdown: a header (machine, versions, run) and one table per suite.

Each row shows both timed forms (eager, and captured in a CUDA graph), the speedups like for like
(eager over eager, graphed over graphed) and the headline: the baseline's faster form over this
row's faster form (runner.speedups). Schema 1 documents (eager only) render with those columns empty.
"""

from __future__ import annotations

from collections import defaultdict

from .environment import CPU_NOTE
from .timing import GRAPHED

_SHAPE_ORDER = ("N", "B", "Tq", "T", "I", "H", "proj", "D", "A", "layers", "bidirectional", "packed")


def shape_text(shape: dict) -> str:
    parts = []
    for k in sorted(shape, key=lambda k: _SHAPE_ORDER.index(k) if k in _SHAPE_ORDER else 99):
        v = shape[k]
        if k == "bidirectional":
            parts.append("bidir" if v else "")
        elif k == "packed":
            parts.append("packed" if v else "")
        elif (k == "layers" and v == 1) or (k == "proj" and not v):
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
    lines += ["", "Times are medians (p20-p80) in ms, eager and captured in a CUDA graph (replayed); "
              "speedup = baseline time / this time, eager over eager and graphed over graphed; "
              "headline = the baseline's faster form over this row's faster form (the forms named). "
              "tokens/s and TFLOP/s are of the eager time; peak memory is the eager step's own allocation "
              "(CUDA only). Failed checks are never timed."]
    if doc.get("schema") == 1:
        lines += ["", "> This run predates the CUDA-graph baseline (schema 1): eager times and ratios only."]
    return "\n".join(lines)


def _range(lo, hi) -> str:
    return "" if lo is None or hi is None else f"{lo:.4g}-{hi:.4g}"


def graphed_cell(r: dict) -> str:
    """The graphed time and its range, or why there is none (empty for schema-1 rows)."""
    status = r.get("graphed_status")
    if status is None:
        return ""
    if status == "ok":
        return f"{r['graphed_ms']:.4g} ({_range(r.get('graphed_p20_ms'), r.get('graphed_p80_ms'))})"
    return f"{status}: {r.get('graphed_error') or ''}"


def speedup_cells(r: dict) -> tuple[str, str]:
    """(eager over eager, graphed over graphed), each "<ratio>x vs <baseline>", comma-separated."""
    eager, graphed = [], []
    for b, v in (r.get("speedup") or {}).items():
        if b.endswith(GRAPHED):
            graphed.append(f"{v:.3g}x vs {b[:-len(GRAPHED)]}")
        else:
            eager.append(f"{v:.3g}x vs {b}")
    return ", ".join(eager), ", ".join(graphed)


def headline_cell(r: dict) -> str:
    """Per baseline: "<ratio>x <this form> vs <baseline> <its form>", and why the baseline had
    only its eager form when it could not be captured."""
    parts = []
    for b, h in (r.get("headline") or {}).items():
        text = f"**{h['ratio']:.3g}x** {h['form']} vs {b} {h['baseline_form']}"
        if h.get("baseline_graphed") not in (None, "ok"):
            text += f" ({b} graphed: {h['baseline_graphed']})"
        parts.append(text)
    return ", ".join(parts)


def table(rows: list[dict]) -> str:
    cols = ["op", "mode", "dtype", "shape", "provider", "eager ms", "p20-p80", "graphed ms (p20-p80)", "tokens/s",
            "TFLOP/s", "peak MiB", "compile s", "rel err", "speedup eager", "speedup graphed",
            "headline (vs faster baseline form)", "status"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        eager, graphed = speedup_cells(r)
        status = r["status"] if r["status"] == "ok" else f"**{r['status']}**: {r.get('error') or ''}"
        cells = [
            r["op"], r["mode"], r["dtype"], shape_text(r["shape"]), r["provider"] + (
                f" ({r['backend']})" if r.get("backend") else ""),
            _num(r["median_ms"], "{:.4g}"), _range(r["p20_ms"], r["p80_ms"]), graphed_cell(r),
            _num(r["tokens_per_s"], "{:.3g}"), _num(r["tflops"], "{:.3g}"), _mib(r["peak_mem_bytes"]),
            _num(r["compile_s"], "{:.1f}"), _num(r["rel_error"], "{:.1e}"), eager, graphed, headline_cell(r), status,
        ]
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
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
