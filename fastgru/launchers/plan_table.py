"""The dispatcher's measured table: which strategy won, per device architecture and shape bucket.

``plan_table.json`` beside this file is generated from committed GPU results by one command
(its ``command`` field; ``python bench/strategy_table.py --emit-plan FILES``) and never edited by
hand. Each entry covers an inclusive range of hidden sizes ``h`` and batch sizes ``b`` for one
(arch, dtype, TF32 flag, mode, formulation, directions) and names the strategy that won there:
``rows``, ``stepwise``, ``persistent`` or ``cudnn`` (PyTorch's own GRU operator, where no fastgru
kernel beat it by the table's margin). A ``persistent`` entry may also name the kernel's step
variant (``variant``, PersistentVariant's name), its hidden block (``block_h``) and forward warp
count (``num_warps``) that won; absent, the base kernel and the candidates' own order. A shape
outside every entry has no entry: the dispatcher's rules decide it (launchers/plan.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .. import backend
from .persistent_choice import PERSISTENT_BLOCK_H, PersistentChoice

TABLE_PATH = Path(__file__).with_name("plan_table.json")
TABLE_STRATEGIES = ("rows", "stepwise", "persistent", "cudnn")
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
_DTYPE_TORCH = {name: dtype for dtype, name in _DTYPE_NAMES.items()}


@dataclass(frozen=True)
class TableKey:
    """What an entry is looked up by (``tf32``: torch.backends.cudnn.allow_tf32 for fp32, else None)."""

    arch: str
    dtype: str
    tf32: bool | None
    mode: str  # "inference" or "training"
    reset_after: bool
    directions: int
    H: int
    B: int

    def __str__(self) -> str:
        tf32 = "" if self.tf32 is None else (" tf32" if self.tf32 else " ieee")
        form = "" if self.reset_after else " reset_after=False"
        return f"{self.arch} {self.dtype}{tf32} {self.mode}{form} D={self.directions} H={self.H} B={self.B}"


@lru_cache(maxsize=None)
def load(path: str | None = None) -> dict:
    """The table document (cached); an empty one where the file is missing."""
    p = Path(path) if path else TABLE_PATH
    if not p.exists():
        return {"format": 1, "entries": []}
    doc = json.loads(p.read_text())
    if doc.get("format") != 1:
        raise RuntimeError(f"fastgru: {p} has format {doc.get('format')!r}; this version reads format 1")
    for e in doc["entries"]:
        if e["strategy"] not in TABLE_STRATEGIES:
            raise RuntimeError(f"fastgru: {p} names an unknown strategy {e['strategy']!r}")
        _check_persistent_fields(p, e)
    return doc


def _check_persistent_fields(path: Path, e: dict) -> None:
    """An entry's variant, block_h and num_warps: only on persistent entries, each one the kernel
    can run (a table from a newer fastgru is refused with a RuntimeError, never half read)."""
    fields = {k: e[k] for k in ("variant", "block_h", "num_warps") if k in e}
    if not fields:
        return
    if e["strategy"] != "persistent":
        raise RuntimeError(f"fastgru: {path} gives {sorted(fields)} to a {e['strategy']!r} entry (persistent only)")
    try:
        choice = PersistentChoice.of_entry(e)
        choice.variant.check(_DTYPE_TORCH[e["dtype"]], e["reset_after"])
    except ValueError as exc:
        raise RuntimeError(f"fastgru: {path} names a persistent choice this version cannot run: {exc}") from exc
    if choice.block_h not in (None, *PERSISTENT_BLOCK_H) or choice.num_warps not in (None, 4, 8):
        raise RuntimeError(f"fastgru: {path} names block_h={choice.block_h!r}, num_warps={choice.num_warps!r}: "
                           f"expected one of {PERSISTENT_BLOCK_H} and 4 or 8")


def device_arch(device) -> str | None:
    """``sm_XY`` of a real CUDA device the kernels compile for; None elsewhere (CPU, the
    interpreter, the compile check's assumed GPU): the table holds measurements of real devices."""
    device = device.device if isinstance(device, torch.Tensor) else torch.device(device)
    if device.type != "cuda" or backend.INTERPRET or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def key_for(device, dtype: torch.dtype, mode: str, reset_after: bool, D: int, H: int, B: int) -> TableKey | None:
    """The lookup key of a call, or None where the table cannot hold one (no real GPU, fp64)."""
    arch = device_arch(device)
    if arch is None or dtype not in _DTYPE_NAMES:
        return None
    tf32 = bool(torch.backends.cudnn.allow_tf32) if dtype == torch.float32 else None
    return TableKey(arch, _DTYPE_NAMES[dtype], tf32, mode, reset_after, D, H, B)


def _matches(e: dict, key: TableKey) -> bool:
    return (e["arch"] == key.arch and e["dtype"] == key.dtype and e.get("tf32") == key.tf32
            and e["mode"] == key.mode and e["reset_after"] == key.reset_after and e["directions"] == key.directions
            and e["h"][0] <= key.H <= e["h"][1] and e["b"][0] <= key.B <= e["b"][1])


def lookup(key: TableKey | None, doc: dict | None = None) -> dict | None:
    """The entry covering ``key`` (None where none does); ``doc`` defaults to the shipped table."""
    if key is None:
        return None
    if doc is None:
        return _lookup_shipped(key)
    return next((e for e in doc["entries"] if _matches(e, key)), None)


@lru_cache(maxsize=4096)
def _lookup_shipped(key: TableKey) -> dict | None:
    """lookup in the shipped table, once per key: the dispatcher asks on every call."""
    return lookup(key, load())


def describe(entry: dict) -> str:
    """One line: the entry's range, its choice and the measurement behind it."""
    m = entry.get("measured", {})
    ratios = m.get("ratio", {})
    best = ratios.get(entry["strategy"]) if entry["strategy"] != "cudnn" else max(ratios.values(), default=None)
    what = (f"{best:.2f}x vs nn.GRU" if entry["strategy"] != "cudnn" else
            f"no fastgru strategy beat nn.GRU by the margin (best {best:.2f}x)") if best is not None else "no ratio"
    named = any(k in entry for k in ("variant", "block_h", "num_warps"))
    choice = f" [{PersistentChoice.of_entry(entry)}]" if named else ""
    return (f"table entry H {entry['h'][0]}-{entry['h'][1]}, B {entry['b'][0]}-{entry['b'][1]} -> "
            f"{entry['strategy']}{choice} (measured at H={m.get('H')}, B={m.get('B')} on {m.get('device')}: {what}, "
            f"nn.GRU {m.get('baseline', 'eager')})")
