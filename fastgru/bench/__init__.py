"""fastgru's benchmark harness: cases, correctness-checked timing, result files, tables and plots.

``python -m bench`` (from the repository) or ``python -m fastgru.bench`` runs the sweep;
``quick_table()`` runs the quick GRU cases and returns a Markdown table (``python -m fastgru``).
"""

from __future__ import annotations


def quick_table(progress: bool = True, device=None) -> str:
    """Run the quick GRU cases on ``device`` (CUDA when present) and return a Markdown report.

    Each fastgru result is checked against the float64 reference before it is timed. Timing is
    lighter than the sweep's (10 ms warm-up, 40 ms of repeats, at least 5) to stay well under half
    a minute on a small CPU; rows skipped by design (torch.compile) are left out of the table.
    """
    from . import cli, render

    doc = cli.sweep("gru", quick=True, device=device, progress=progress, warmup_ms=10.0, rep_ms=40.0)
    doc["rows"] = [r for r in doc["rows"] if r["status"] != "skipped"]
    return render.markdown(doc)


def main(argv=None) -> int:
    from . import cli

    return cli.main(argv)


__all__ = ["quick_table", "main"]
