"""The change between two benchmark result files, row by row (matched on case and provider):

    python -m bench.compare OLD.json NEW.json [--threshold 0.05]
    python bench/compare.py OLD.json NEW.json          (the same, run by path)

Both timed forms are compared: the eager time (``verdict``) and, where both files have it, the
CUDA-graphed time (``graphed_verdict``; empty when either file has none, e.g. a schema-1 file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastgru.bench.table import shape_text  # noqa: E402

from bench import result_files  # noqa: E402


def _key(r: dict) -> tuple:
    return (r["suite"], r["op"], r["mode"], r["dtype"], json.dumps(r["shape"], sort_keys=True), r["provider"])


def compare(old: dict, new: dict, threshold: float = 0.05) -> list[dict]:
    """One entry per row in either file: old and new median, ratio new/old, and a verdict; the
    same for the graphed time (old_graphed_ms, new_graphed_ms, graphed_ratio, graphed_verdict).

    verdict: faster / slower (beyond ``threshold``; flagged when the p20-p80 ranges still overlap),
    same, new, gone, or the status change. graphed_verdict: faster / slower / same, or None when
    either row has no graphed time.
    """
    olds = {_key(r): r for r in old["rows"]}
    news = {_key(r): r for r in new["rows"]}
    out = []
    for key in list(olds) + [k for k in news if k not in olds]:
        o, n = olds.get(key), news.get(key)
        ref = n or o
        entry = {"op": ref["op"], "mode": ref["mode"], "dtype": ref["dtype"], "shape": ref["shape"],
                 "provider": ref["provider"], "old_ms": o and o["median_ms"], "new_ms": n and n["median_ms"],
                 "ratio": None, "verdict": None, "old_graphed_ms": _graphed(o), "new_graphed_ms": _graphed(n),
                 "graphed_ratio": None, "graphed_verdict": None}
        if o is None:
            entry["verdict"] = "new"
        elif n is None:
            entry["verdict"] = "gone"
        elif o["status"] != "ok" or n["status"] != "ok":
            entry["verdict"] = "same status" if o["status"] == n["status"] else f"{o['status']} -> {n['status']}"
        else:
            entry["ratio"] = n["median_ms"] / o["median_ms"]
            entry["verdict"] = _verdict(entry["ratio"], threshold, _overlap(o, n))
            if entry["old_graphed_ms"] and entry["new_graphed_ms"]:
                entry["graphed_ratio"] = entry["new_graphed_ms"] / entry["old_graphed_ms"]
                entry["graphed_verdict"] = _verdict(entry["graphed_ratio"], threshold, _overlap(o, n, "graphed_"))
        out.append(entry)
    return out


def _graphed(r: dict | None) -> float | None:
    """The row's graphed time (None when it has none: not captured, or a schema-1 file)."""
    if r is None or r.get("status") != "ok" or r.get("graphed_status") != "ok":
        return None
    return r.get("graphed_ms")


def _verdict(ratio: float, threshold: float, overlap: bool) -> str:
    verdict = "slower" if ratio > 1 + threshold else "faster" if ratio < 1 - threshold else "same"
    if verdict != "same" and overlap:
        verdict += " (p20-p80 overlap: noise?)"
    return verdict


def _overlap(o: dict, n: dict, prefix: str = "") -> bool:
    """Do the two rows' p20-p80 ranges overlap (then a change of the median may be noise)?
    ``prefix`` "graphed_" compares the graphed ranges."""
    lo, hi = f"{prefix}p20_ms", f"{prefix}p80_ms"
    if None in (o.get(lo), o.get(hi), n.get(lo), n.get(hi)):
        return False
    return n[lo] <= o[hi] and o[lo] <= n[hi]


def markdown(old: dict, new: dict, threshold: float = 0.05) -> str:
    rows = compare(old, new, threshold)
    oe, ne = old["env"], new["env"]
    lines = [f"# {oe['device_name']} `{oe['commit']}` ({oe['date']}) -> {ne['device_name']} `{ne['commit']}` "
             f"({ne['date']})", ""]
    if oe["device_name"] != ne["device_name"]:
        lines += ["> **Different devices: the ratios compare machines, not code.**", ""]
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["Summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
              f" (threshold {threshold:.0%}; ratio = new / old median time)", ""]
    lines += ["| op | mode | dtype | shape | provider | old ms | new ms | new/old | verdict | old graphed ms | "
              "new graphed ms | graphed new/old | graphed verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['mode']} | {r['dtype']} | {shape_text(r['shape'])} | "
                     f"{r['provider']} | {_f(r['old_ms'])} | {_f(r['new_ms'])} | {_f(r['ratio'], '{:.3f}')} | "
                     f"{r['verdict']} | {_f(r['old_graphed_ms'])} | {_f(r['new_graphed_ms'])} | "
                     f"{_f(r['graphed_ratio'], '{:.3f}')} | {r['graphed_verdict'] or ''} |")
    return "\n".join(lines) + "\n"


def _f(v, fmt="{:.4g}"):
    return "" if v is None else fmt.format(v)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.compare", description="Compare two fastgru benchmark result files.")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--threshold", type=float, default=0.05, help="relative change counted as a change")
    a = p.parse_args(argv)
    print(markdown(result_files.load(a.old), result_files.load(a.new), a.threshold), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
