"""The dispatcher's plan table (fastgru/launchers/plan_table.json) from committed strategy-table
results: ``python bench/strategy_table.py --emit-plan FILE.json ...``. The table is never edited
by hand; tests/test_plan_emit.py checks that the committed one is what its sources give.

Rules (the format and its reader: fastgru/launchers/plan_table.py):

* A provider's time at a shape is its best form, min(eager ms, graphed ms) over the forms measured
  (older files: eager only); a row whose status is not "ok" is ignored, and so is a form whose
  graphed_status is not "ok".
* The ratio of a strategy is best(nn.GRU) / best(strategy), nn.GRU taken from the same file:
  cuDNN's own time moves between runs, so ratios are never formed across files. Several files
  measuring the same shape combine by taking each strategy's worst ratio: a strategy is chosen
  only where it beat nn.GRU by the margin in every file that timed both side by side (the best
  ratio would let one slow nn.GRU run decide: the 2026-11-23 fp32 H = 256 B = 8 inference row gave
  rows 1.50x in run 1, where nn.GRU's p20-p80 spread was 12-23 ms, and 0.90x in run 2). A shape
  without an "ok" nn.GRU row in any file has no entry.
* Candidates are the strategies the dispatcher may run by default in that dtype: rows and
  stepwise always, persistent only for plan.PERSISTENT_DEFAULT_DTYPES. The entry names the
  candidate with the highest ratio if that ratio is at least MARGIN, else "cudnn".
* A persistent row of a variant file (``strategy_table.py --variants``) is its own candidate,
  identified by (variant name, block_h, num_warps) (None: the dispatcher's candidates decided);
  it is named ``persistent:<variant>[/h<block_h>][/w<num_warps>]`` in the entry's ratios, and
  rows of older files, and base rows with neither forced, are plain ``persistent``. Files combine
  per identity, by the worst ratio, as above. A persistent winner's entry carries the optional
  fields "variant", "block_h" and "num_warps" (fastgru/launchers/plan_table.py reads them), each
  left out where it is the default (base, None, None), so a plain persistent entry is as before.
  A variant computing fp32 with plain TF32 (precision "tf32") is never a candidate: see eligible.
* Buckets: per (arch, dtype, tf32, mode, formulation, directions), the measured H values, sorted,
  split at the geometric midpoints of neighbours (the lower bucket ends at the floor), the outer
  buckets reaching half a step (geometric) beyond the outermost points and no further (the
  lowest edge rounded up, the highest down); the same for B, never below 1. One measured value
  is a bucket of that value alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.cudnn_algo import arch_of_device_name

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "fastgru" / "launchers" / "plan_table.json"
FORMAT = 1
MARGIN = 1.05
STRATEGIES = ("rows", "stepwise", "persistent")
BASELINE = "nn.GRU"


def candidates(dtype: str) -> tuple[str, ...]:
    """The fastgru strategies the dispatcher may pick by itself in ``dtype`` ("bf16", "fp16", "fp32")."""
    import torch

    from fastgru.launchers.plan import PERSISTENT_DEFAULT_DTYPES

    names = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}
    persistent = {names[d] for d in PERSISTENT_DEFAULT_DTYPES}
    return tuple(s for s in STRATEGIES if s != "persistent" or dtype in persistent)


def candidate_name(row: dict) -> str:
    """The candidate a row measured: its provider, or for a persistent row of a variant file its
    identity (variant, block_h, num_warps) folded into one name (plain "persistent" for base with
    neither forced, and for rows that name no variant)."""
    provider = row["provider"]
    variant, block_h, num_warps = row.get("variant") or "base", row.get("block_h"), row.get("num_warps")
    if provider != "persistent" or (variant, block_h, num_warps) == ("base", None, None):
        return provider
    return f"persistent:{variant}" + (f"/h{block_h}" if block_h is not None else "") + (
        f"/w{num_warps}" if num_warps is not None else "")


def identity(name: str) -> tuple[str, str, int | None, int | None]:
    """(strategy, variant, block_h, num_warps) of a candidate_name."""
    strategy, _, rest = name.partition(":")
    if not rest:
        return strategy, "base", None, None
    variant, *parts = rest.split("/")
    fields = {p[0]: int(p[1:]) for p in parts}
    return strategy, variant, fields.get("h"), fields.get("w")


def eligible(name: str, dtype: str) -> bool:
    """Whether candidate ``name`` may win a bucket in ``dtype``: its strategy is one the
    dispatcher runs by default there (candidates), and it is not a plain-TF32 variant. The parity
    contract: where torch.backends.cudnn.allow_tf32 lets cuDNN use TF32, cuDNN may still keep a
    GRU in fp32, so fastgru's fp32 must stay at fp32-level error there -- 3xTF32 ("tf32x3") is,
    plain TF32 is not, however fast it measured."""
    strategy, variant, _, _ = identity(name)
    return strategy in candidates(dtype) and "tf32" not in variant.split("+")


def best_form(row: dict) -> tuple[float, str] | None:
    """(ms, form) of a row's fastest measured form ("eager" or "graphed"), None if the row is not ok."""
    if row.get("status") != "ok":
        return None
    forms = []
    if isinstance(row.get("ms"), (int, float)):
        forms.append((float(row["ms"]), "eager"))
    if row.get("graphed_status") == "ok" and isinstance(row.get("graphed_ms"), (int, float)):
        forms.append((float(row["graphed_ms"]), "graphed"))
    return min(forms) if forms else None


def arch_of(doc: dict, source: str) -> str:
    """The file's device architecture, sm_XY: recorded by newer files, else from the device name."""
    if doc.get("arch"):
        return doc["arch"]
    arch = arch_of_device_name((doc.get("env") or {}).get("device_name"))
    if arch is None:
        raise ValueError(f"{source}: no 'arch' recorded and device name {(doc.get('env') or {}).get('device_name')!r} is not known")
    return arch


def _source_name(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"plan sources must lie inside the repository {root}: {path}") from None


def file_measurements(doc: dict, source: str) -> dict:
    """{key: {"T", "device", "source", "baseline", "ratio": {strategy: ratio}}} for one result file,
    key = (arch, dtype, tf32, mode, reset_after, directions, H, B); only shapes whose nn.GRU row is ok."""
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{source}: not a strategy-table result file (no 'rows' list)")
    arch = arch_of(doc, source)
    device = (doc.get("env") or {}).get("device_name")
    file_reset_after = bool(doc.get("reset_after", True))
    directions = int(doc.get("directions", 1))
    base, rest = {}, []
    for r in doc["rows"]:
        dtype = r["dtype"]
        if dtype == "fp32":
            if "tf32_cudnn" not in doc:
                raise ValueError(f"{source}: fp32 rows but no 'tf32_cudnn' flag recorded")
            tf32 = bool(doc["tf32_cudnn"])
        else:
            tf32 = None
        reset_after = bool(r.get("reset_after", file_reset_after))  # variant files hold both formulations
        key = (arch, dtype, tf32, r["mode"], reset_after, directions, int(r["H"]), int(r["B"]))
        if r["provider"] == BASELINE:
            form = best_form(r)
            if form is not None:
                base[key] = (form, r["T"])
        else:
            rest.append((key, r))
    out = {}
    for key, ((ms, form), T) in base.items():
        out[key] = {"T": T, "device": device, "source": source, "baseline": form, "ratio": {}}
    for key, r in rest:
        form = best_form(r)
        if form is None or key not in out:
            continue
        ratio = base[key][0][0] / form[0]
        name = candidate_name(r)
        prev = out[key]["ratio"].get(name)
        out[key]["ratio"][name] = ratio if prev is None else min(prev, ratio)
    return out


def bucket_edges(values, minimum: int = 1) -> list[tuple[int, int, int]]:
    """[(value, lo, hi)] for the sorted distinct measured values: inclusive, non-overlapping ranges
    split at geometric midpoints (floor of sqrt(a*b) closes the lower one), the outer ones reaching
    half a geometric step beyond the outermost values (lowest rounded up, highest down)."""
    vs = sorted(set(int(v) for v in values))
    if not vs or vs[0] < 1:
        raise ValueError(f"values: expected positive ints, got {values!r}")
    if len(vs) == 1:
        return [(vs[0], vs[0], vs[0])]
    out = []
    for i, v in enumerate(vs):
        if i == 0:
            a, b = vs[0], vs[1]  # ceil(a / sqrt(b / a)) = the least n with n^2 * b >= a^3
            lo = math.isqrt(a ** 3 // b)
            while lo * lo * b < a ** 3:
                lo += 1
            lo = max(minimum, lo)
        else:
            lo = math.isqrt(vs[i - 1] * v) + 1
        if i == len(vs) - 1:
            hi = math.isqrt(v ** 3 // vs[i - 1])  # floor(v * sqrt(v / previous))
        else:
            hi = math.isqrt(v * vs[i + 1])
        out.append((v, lo, hi))
    return out


def _tf32_sort(v):
    return -1 if v is None else int(v)


def entries(measurements: list[dict], margin: float = MARGIN) -> list[dict]:
    """The table's entries from per-file measurements (file_measurements of each file)."""
    merged: dict = {}
    for per_file in measurements:
        for key, m in per_file.items():
            merged.setdefault(key, []).append(m)
    groups: dict = {}
    for key in merged:
        groups.setdefault(key[:6], []).append(key)
    out = []
    for group, keys in groups.items():
        arch, dtype, tf32, mode, reset_after, directions = group
        h_buckets = {v: (lo, hi) for v, lo, hi in bucket_edges([k[6] for k in keys])}
        b_buckets = {v: (lo, hi) for v, lo, hi in bucket_edges([k[7] for k in keys])}
        for key in keys:
            H, B = key[6], key[7]
            ms = sorted(merged[key], key=lambda m: m["source"])
            best: dict = {}  # candidate -> (its worst ratio over the files, that file's measurement)
            for m in ms:
                for s, ratio in m["ratio"].items():
                    if eligible(s, dtype) and (s not in best or ratio < best[s][0]):
                        best[s] = (ratio, m)
            choice: dict = {}
            if best:
                winner = max(sorted(best), key=lambda s: best[s][0])
                baseline = best[winner][1]["baseline"]
                strategy = winner if best[winner][0] >= margin else "cudnn"
                strategy, variant, block_h, num_warps = identity(strategy)
                choice = {k: v for k, v, default in (("variant", variant, "base"), ("block_h", block_h, None),
                                                     ("num_warps", num_warps, None)) if v != default}
            else:
                baseline, strategy = ms[0]["baseline"], "cudnn"
            Ts = sorted({m["T"] for m in ms})
            devices = sorted({m["device"] for m in ms if m["device"]})
            out.append({
                "arch": arch, "dtype": dtype, "tf32": tf32, "mode": mode, "reset_after": reset_after,
                "directions": directions, "h": list(h_buckets[H]), "b": list(b_buckets[B]), "strategy": strategy, **choice,
                "measured": {"H": H, "B": B, "T": Ts[0] if len(Ts) == 1 else Ts, "device": " + ".join(devices) or None,
                             "ratio": {s: round(best[s][0], 3) for s in sorted(best)},
                             "baseline": baseline, "sources": sorted({m["source"] for m in ms})},
            })
    out.sort(key=lambda e: (e["arch"], e["dtype"], _tf32_sort(e["tf32"]), e["mode"], e["reset_after"],
                            e["directions"], e["h"][0], e["b"][0]))
    return out


def emit(paths, root: Path = ROOT, out: Path | None = None, margin: float = MARGIN) -> dict:
    """The plan-table document for these result files (repository-relative names under ``root``)."""
    if not paths:
        raise ValueError("paths: --emit-plan needs at least one strategy-table result file")
    sources = sorted({_source_name(Path(p), root) for p in paths})
    measurements = []
    for source in sources:
        doc = json.loads((root / source).read_text())
        measurements.append(file_measurements(doc, source))
    command = "python bench/strategy_table.py --emit-plan " + " ".join(sources)
    if out is not None and Path(out).resolve() != DEFAULT_OUT.resolve():
        command += f" --plan-out {out}"
    return {"format": FORMAT, "command": command, "margin": margin, "sources": sources,
            "entries": entries(measurements, margin)}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1) + "\n"


def write(doc: dict, out: Path = DEFAULT_OUT) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(doc))
    return out


def summary(doc: dict) -> str:
    """One line per entry: what the dispatcher will do where, and the ratios it rests on."""
    lines = []
    for e in doc["entries"]:
        tf32 = "" if e["tf32"] is None else f" tf32={'on' if e['tf32'] else 'off'}"
        ratios = ", ".join(f"{s} {r:.2f}x" for s, r in e["measured"]["ratio"].items()) or "no candidate measured"
        named = "".join(f" {k}={e[k]}" for k in ("variant", "block_h", "num_warps") if k in e)
        lines.append(f"{e['arch']} {e['dtype']}{tf32} {e['mode']:9} H {e['h'][0]}-{e['h'][1]} B {e['b'][0]}-{e['b'][1]}: "
                     f"{e['strategy']:10}{named} ({ratios}; vs nn.GRU {e['measured']['baseline']})")
    return "\n".join(lines)
