"""A plain progress bar on stderr (no tqdm): redrawn in place on a terminal, one line per step in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None, width: int = 24):
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, i: int, n: int, case) -> None:
        done = int(self.width * i / n) if n else self.width
        bar = "#" * done + "." * (self.width - done)
        label = case.id if case is not None else "done"
        line = f"[{bar}] {i}/{n} {time.perf_counter() - self.start:6.1f}s {label}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:150] + ("\n" if case is None else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
