"""The compile check's files (JSON rows, a Markdown table) and its verdict (the exit code)."""

from __future__ import annotations

import json
import os
from collections import defaultdict


def problems(rows: list[dict], shared_limit: int) -> list[str]:
    """What makes the check fail: a failed compile, shared memory over the arch's per-block
    limit, or a spill in a recurrence kernel the dispatcher runs by itself. Other spills (forced
    strategies, cell, attention) are reported, not fatal."""
    out = []
    for r in rows:
        where = f"{r['kernel']} {r['dtype']} {_shape(r['shape'])}"
        if r["status"] != "ok":
            out.append(f"failed: {where}: {_first_line(r['error'])}")
        elif r["shared_bytes"] > shared_limit and not r["probe"]:
            out.append(f"shared memory {r['shared_bytes']} B > {shared_limit} B: {where} {_config(r['config'])}")
        elif r["spill_bytes"] and r["pick"] == "dispatcher" and r["strategy"] in ("rows", "stepwise", "persistent"):
            out.append(f"spills {r['spill_bytes']} B/thread in a kernel the dispatcher runs: {where} {_config(r['config'])}")
    return list(dict.fromkeys(out))


def summary(rows: list[dict], shared_limit: int) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    return dict(
        rows=len(rows),
        ok=len(ok),
        failed=len(rows) - len(ok),
        spilled=sum(1 for r in ok if r["spill_bytes"]),
        max_registers=max((r["registers"] for r in ok), default=0),
        max_shared_bytes=max((r["shared_bytes"] for r in ok), default=0),
        shared_limit=shared_limit,
        kernels=sorted({r["kernel"] for r in rows}),
    )


def write(out_dir: str, arch: int, rows: list[dict], notes: list[str], meta: dict) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"compile-sm{arch}")
    with open(base + ".json", "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
    with open(base + ".md", "w") as f:
        f.write(markdown(arch, rows, notes, meta))
    return base + ".json", base + ".md"


def markdown(arch: int, rows: list[dict], notes: list[str], meta: dict) -> str:
    """Summary, what fails the check, then one table line per distinct compile (kernel, dtype,
    config) with the shapes that use it; probes (persistent candidates the dispatcher compiled
    to size, and rejected) appear only when they failed."""
    s = summary(rows, meta["shared_limit"])
    bad = problems(rows, meta["shared_limit"])
    lines = [
        f"# Compile check: sm_{arch}",
        "",
        f"{meta['form']} form, Triton {meta['triton']}, torch {meta['torch']}, planned as {meta['gpu']}, "
        f"{meta['seconds']:.0f} s. Dtypes: {', '.join(meta.get('dtypes', []))}; strategies also compiled forced: "
        f"{', '.join(meta.get('forced', [])) or 'none'}.",
        "",
        f"- compiles: {s['rows']} rows, {s['ok']} ok, {s['failed']} failed, {s['spilled']} spilled",
        f"- max registers per thread: {s['max_registers']}; max shared memory: {s['max_shared_bytes']} B "
        f"(limit {s['shared_limit']} B per block)",
        f"- verdict: {'FAIL' if bad else 'pass'}",
        "",
    ]
    if bad:
        lines += ["## What fails the check", ""] + [f"- {b}" for b in bad] + [""]
    if notes:
        lines += ["## Forced strategies the dispatcher cannot plan", ""] + [f"- {n}" for n in notes] + [""]
    groups: dict = defaultdict(list)
    for r in rows:
        key = (r["kernel"], r["strategy"], r["dtype"], json.dumps(r["config"], sort_keys=True))
        groups[key].append(r)
    lines += [
        "## Kernels",
        "",
        "| kernel | strategy | dtype | config | status | regs | spill B | shared B | mma | picked by | shapes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kernel, strategy, dtype, _), rs in groups.items():
        r = _worst(rs)
        picks = "/".join(sorted({x["pick"] for x in rs}))
        shapes = "; ".join(dict.fromkeys(_shape(x["shape"]) for x in rs))
        status = r["status"] if r["status"] == "ok" else f"**failed**: {_first_line(r['error'])[:200]}"
        spill = f"**{r['spill_bytes']}**" if r["spill_bytes"] else r["spill_bytes"]
        lines.append(
            f"| {kernel} | {strategy} | {dtype} | {_config(r['config'])} | {status} | {_dash(r['registers'])} "
            f"| {_dash(spill)} | {_dash(r['shared_bytes'])} | {_dash(r['mma'])} | {picks} | {shapes} |"
        )
    return "\n".join(lines) + "\n"


_SHOWN = ("BLOCK_B", "BLOCK_H", "BLOCK_K", "BLOCK_HP", "BLOCK_Q", "BLOCK_T", "BLOCK_A", "BLOCK_D",
          "DOT_PRECISION", "PRECISION", "num_warps", "num_stages")


def _worst(rows: list[dict]) -> dict:
    """One line for a group of compiles of the same kernel and config (at several shapes, which
    can specialize differently): a failure if any, else the largest registers, spills, shared."""
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return failed[0]
    return dict(rows[0], **{k: max(r[k] for r in rows) for k in ("registers", "spill_bytes", "shared_bytes")})


def _config(config: dict) -> str:
    return " ".join(f"{k}={config[k]}" for k in _SHOWN if k in config)


def _shape(shape: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items())


def _first_line(text) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _dash(value) -> str:
    return "-" if value is None else str(value)
