"""PNG plots of a result document (matplotlib is an optional extra: ``pip install 'fastgru[plot]'``):
fastgru's GRU speedup over nn.GRU vs batch (the headline ratio, against nn.GRU's faster form,
eager or CUDA-graphed; the eager ratio for runs that predate the graphed baseline), and the
attention ops' peak memory vs T."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


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


def gru_speedup(r: dict, baseline: str = "nn.GRU") -> float | None:
    """The ratio the GRU plot shows for a row: the headline (``baseline``'s faster form over the
    row's faster form) when the row has one, else the eager ratio (schema-1 rows)."""
    head = (r.get("headline") or {}).get(baseline)
    if head is not None:
        return head["ratio"]
    return (r.get("speedup") or {}).get(baseline)


def plot_gru_speedup(doc: dict, path, baseline: str = "nn.GRU") -> Path | None:
    """fastgru's speedup over ``baseline`` vs batch, one line per (hidden, T); a panel per mode/dtype."""
    rows = [r for r in doc["rows"] if r["op"] == "gru" and r["provider"] == "fastgru" and r["status"] == "ok"
            and gru_speedup(r, baseline) is not None and not r["shape"].get("packed")
            and r["shape"].get("layers", 1) == 1]
    if not rows:
        return None
    headline = all(baseline in (r.get("headline") or {}) for r in rows)
    ylabel = f"speedup vs faster of {baseline} eager / graphed" if headline else f"speedup vs {baseline} (eager)"
    plt = _pyplot()
    panels = sorted({(r["mode"], r["dtype"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (mode, dtype) in zip(axes[0], panels):
        lines = defaultdict(list)
        for r in rows:
            if (r["mode"], r["dtype"]) == (mode, dtype):
                lines[(r["shape"]["H"], r["shape"]["T"])].append((r["shape"]["B"], gru_speedup(r, baseline)))
        for (H, T), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-" if T > 64 else "--",
                    label=f"H={H} T={T}")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"GRU {mode} {dtype}")
        ax.legend(fontsize=7)
    return _save(plt, fig, doc, path)


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
            sizes = " ".join(f"{k}={s[k]}" for k in ("D", "heads", "hops") if k in s)  # cases of one op differ here
            lines[(r["provider"], r["mode"], r["dtype"], s["N"], tq, sizes)].append((s["T"], r["peak_mem_bytes"] / 2**20))
        for (prov, mode, dtype, N, tq, sizes), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{prov} {mode[:5]} {dtype} N={N} {tq} {sizes}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (keys)")
        ax.set_ylabel("peak MiB")
        ax.set_title(op)
        ax.legend(fontsize=6)
    return _save(plt, fig, doc, path)


def _save(plt, fig, doc: dict, path) -> Path:
    """Title the figure with the run, write it to ``path`` and free it."""
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
