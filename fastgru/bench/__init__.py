"""fastgru's benchmark harness: cases, correctness-checked timing, result files, tables and plots.

``python -m bench`` (from the repository) or ``python -m fastgru.bench`` runs the sweep;
``quick_table()`` runs the quick GRU cases and returns a Markdown table (``python -m fastgru``).
"""

from __future__ import annotations


def quick_table(progress: bool = True, device=None) -> str:
    """Run the quick GRU cases on ``device`` (CUDA when present) and return a Markdown report."""
    from . import cli, render

    doc = cli.sweep("gru", quick=True, device=device, progress=progress)
    return render.markdown(doc)


def main(argv=None) -> int:
    from . import cli

    return cli.main(argv)


__all__ = ["quick_table", "main"]
