"""What ``python -m fastgru`` needs to benchmark: the quick GRU and LSTM cases, their providers,
the correctness-checked timing and the Markdown table. ``quick_table()`` runs them.

The full benchmark (every suite, result files, plots, compare) is the repository's bench/ folder:
``python -m bench`` from the repository root.
"""

from __future__ import annotations


def quick_table(progress: bool = True, device=None) -> str:
    """Run the quick GRU and LSTM cases on ``device`` (CUDA when present) and return a Markdown
    report (one table per suite).

    Each fastgru result is checked against the float64 reference before it is timed. Timing is
    lighter than the sweep's (10 ms warm-up, 40 ms of repeats, at least 5) to stay well under half
    a minute on a small CPU; rows skipped by design (torch.compile) are left out of the table.
    On CUDA each step is also timed captured in a CUDA graph, and the headline ratio is against
    nn.GRU's (nn.LSTM's) faster form; on a CPU the graphed column says why there is none.
    """
    from .cases import default_dtypes, quick_gru_cases, quick_lstm_cases
    from .sweep import default_device, sweep
    from .table import markdown

    device = device or default_device()
    dtypes = default_dtypes(device)
    cases = quick_gru_cases(dtypes) + quick_lstm_cases(dtypes)
    doc = sweep(cases, device, progress=progress, warmup_ms=10.0, rep_ms=40.0, suite="gru,lstm", quick=True)
    doc["rows"] = [r for r in doc["rows"] if r["status"] != "skipped"]
    return markdown(doc)


__all__ = ["quick_table"]
