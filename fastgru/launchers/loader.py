"""The one kernel loader: every launcher gets its kernel modules from ``kernels``.

The kernel modules are imported on first use, never when fastgru is imported: ``triton.jit``
reads ``TRITON_INTERPRET`` when it decorates a function, and fastgru.backend must have made the
interpreter choice by then.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def kernels(name: str) -> ModuleType:
    """The kernel module ``fastgru.kernels.<name>`` (imported on first call, cached by Python)."""
    return importlib.import_module(f"fastgru.kernels.{name}")
