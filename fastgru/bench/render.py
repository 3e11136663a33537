"""Turn a result document into a Markdown table, PNG plots (when matplotlib is installed), and the
index of the newest run per device (``bench/results/README.md``)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from . import results

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
        lines += ["", f"> **{results.CPU_NOTE}**"]
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


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib is an optional extra: `pip install fastgru[plot]`)
# ---------------------------------------------------------------------------------------------


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gru_speedup(doc: dict, path, baseline: str = "nn.GRU") -> Path | None:
    """fastgru's speedup over ``baseline`` vs batch, one line per (hidden, T); a panel per mode/dtype."""
    rows = [r for r in doc["rows"] if r["op"] == "gru" and r["provider"] == "fastgru" and r["status"] == "ok"
            and baseline in r["speedup"] and not r["shape"].get("packed") and r["shape"].get("layers", 1) == 1]
    if not rows:
        return None
    plt = _pyplot()
    panels = sorted({(r["mode"], r["dtype"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (mode, dtype) in zip(axes[0], panels):
        lines = defaultdict(list)
        for r in rows:
            if (r["mode"], r["dtype"]) == (mode, dtype):
                lines[(r["shape"]["H"], r["shape"]["T"])].append((r["shape"]["B"], r["speedup"][baseline]))
        for (H, T), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-" if T > 64 else "--",
                    label=f"H={H} T={T}")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_ylabel(f"speedup vs {baseline}")
        ax.set_title(f"GRU {mode} {dtype}")
        ax.legend(fontsize=7)
    fig.suptitle(_title(doc), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_attention_memory(doc: dict, path) -> Path | None:
    """Peak memory vs T per attention op and provider (CUDA runs only; CPU rows have none)."""
    rows = [r for r in doc["rows"] if r["suite"] == "attention" and r["status"] == "ok" and r["peak_mem_bytes"]]
    if not rows:
        return None
    plt = _pyplot()
    ops = sorted({r["op"] for r in rows})
    fig, axes = plt.subplots(1, len(ops), figsize=(5 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        lines = defaultdict(list)
        for r in rows:
            if r["op"] != op:
                continue
            s = r["shape"]
            tq = "" if "Tq" not in s else ("Tq=T" if s["Tq"] == s["T"] else f"Tq={s['Tq']}")
            lines[(r["provider"], r["mode"], r["dtype"], s["N"], tq)].append((s["T"], r["peak_mem_bytes"] / 2**20))
        for (prov, mode, dtype, N, tq), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{prov} {mode[:5]} {dtype} N={N} {tq}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (keys)")
        ax.set_ylabel("peak MiB")
        ax.set_title(op)
        ax.legend(fontsize=6)
    fig.suptitle(_title(doc), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _title(doc: dict) -> str:
    env = doc["env"]
    title = f"{env['device_name']} ({env['commit']}, {env['date'][:10]})"
    if env.get("device_type") != "cuda":
        title += "\nCPU numbers: PyTorch's own ops, not the Triton kernels"
    return title


def plots(doc: dict, stem) -> list[Path]:
    """All plots for a document, named ``<stem>-<plot>.png``; [] without matplotlib."""
    if not have_matplotlib():
        return []
    stem = Path(stem)
    made = [plot_gru_speedup(doc, stem.with_name(stem.name + "-gru-speedup.png")),
            plot_attention_memory(doc, stem.with_name(stem.name + "-attention-memory.png"))]
    return [p for p in made if p is not None]


# ---------------------------------------------------------------------------------------------
# Index of the newest run per device
# ---------------------------------------------------------------------------------------------

INDEX_INTRO = """# Benchmark results

One folder per device; one JSON per run (`<date>-<commit>.json`, schema in
`fastgru/bench/results.py`), with its Markdown table (`.md`) and plots (`.png`) beside it.
Regenerated by `python -m bench` (or `python -m bench --index-only`). Compare two runs with
`python bench/compare.py OLD.json NEW.json`. CPU runs measure PyTorch's own operators, not the
Triton kernels; only CUDA runs speak for the kernels.
"""


def write_index(results_dir) -> Path:
    """Regenerate ``<results_dir>/README.md``: the newest run of each device folder."""
    root = Path(results_dir)
    latest = {}
    for f in sorted(root.glob("*/*.json")):
        try:
            doc = json.loads(f.read_text())
            env = doc["env"]
        except (ValueError, KeyError, OSError):
            continue
        key = f.parent.name
        if key not in latest or env["date"] > latest[key][0]["date"]:
            latest[key] = (env, f, doc)
    lines = [INDEX_INTRO, "## Latest run per device", ""]
    if not latest:
        lines.append("No runs committed yet. Run `bash bench/gpu_check.sh` on a GPU, then commit its JSON, "
                     "Markdown and plots here (see bench/README.md).")
    else:
        lines += ["| device | date | commit | torch | triton | CUDA | rows ok/all | report |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, (env, f, doc) in sorted(latest.items()):
            rows = doc.get("rows", [])
            ok = sum(r.get("status") == "ok" for r in rows)
            md = f.with_suffix(".md")
            report = f"[{md.name}]({key}/{md.name})" if md.exists() else f"[{f.name}]({key}/{f.name})"
            lines.append(f"| {env['device_name']} | {env['date']} | `{env['commit']}` | {env['torch']} | "
                         f"{env.get('triton')} | {env.get('cuda')} | {ok}/{len(rows)} | {report} |")
    path = root / "README.md"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
