"""The compile check's files (JSON rows, a Markdown table) and its verdict (the exit code)."""

from __future__ import annotations

import json
import os
from collections import defaultdict


# Where the numerics contract needs precise math: the dtype rows, and the kernels (by name
# prefix) of each, whose compiled PTX may contain no approximate instruction at all
# (ptxas.approx_ops). The other rows only report theirs.
#
# | dtype     | kernels                       | why                                                     |
# |-----------|-------------------------------|---------------------------------------------------------|
# | fp32-ieee | every kernel                  | fp32 limit 1e-5 and <= 2x PyTorch's error               |
# | fp64      | every kernel                  | the reference's own dtype                               |
# | fp32-tf32 | gru_fwd*, gru_bwd*, decoder_* | the layer and decoder run 3xTF32 for fp32-level error   |
# | fp32-tf32 | gru_cell_*, attention_*       | report only: plain TF32 (cuda.matmul.allow_tf32), 5e-3  |
# | bf16/fp16 | none                          | report only: limit 2e-2                                 |
#
# Nothing approximate is allowed, not even the ex2.approx.ftz.f32 that libdevice-style precise
# routines take of an argument they have reduced first: the PTX cannot tell that use from
# tl.exp's unreduced ex2.approx.f32(x log2 e), and fastgru needs neither (activations.exp is fma
# and integer operations, fp64 exp is libdevice's fma-only routine). A kernel that adopts such a
# routine gets an entry here naming the instruction, with its measured bound.
PRECISE_MATH = {
    "fp32-ieee": ("",),
    "fp64": ("",),
    "fp32-tf32": ("gru_fwd", "gru_bwd", "lstm_fwd", "lstm_bwd", "decoder_"),
}


def needs_precise_math(row: dict) -> bool:
    """Whether PRECISE_MATH gates this row's approximate instructions."""
    return any(row["kernel"].startswith(prefix) for prefix in PRECISE_MATH.get(row["dtype"], ()))


def problems(rows: list[dict], shared_limit: int) -> list[str]:
    """What makes the check fail: a failed compile, shared memory over the arch's per-block
    limit, a spill in a recurrence kernel the dispatcher runs by itself, or approximate math in
    a kernel whose dtype row needs precise math (PRECISE_MATH). Other spills (forced strategies,
    cell, attention) and other approximate math are reported, not fatal."""
    out = []
    for r in rows:
        where = f"{r['kernel']} {r['dtype']} {_shape(r['shape'])}"
        if r["status"] == NOT_BUILT:  # a step variant whose switches are not wired yet: its own section
            continue
        if r["status"] != "ok":
            out.append(f"failed: {where}: {_first_line(r['error'])}")
            continue
        if r["shared_bytes"] > shared_limit and not r["probe"]:
            out.append(f"shared memory {r['shared_bytes']} B > {shared_limit} B: {where} {_config(r['config'])}")
        elif r["spill_bytes"] and r["pick"] == "dispatcher" and r["strategy"] in ("rows", "stepwise", "persistent"):
            out.append(f"spills {r['spill_bytes']} B/thread in a kernel the dispatcher runs: {where} {_config(r['config'])}")
        if r.get("approx") and needs_precise_math(r):
            out.append(f"approximate math where the contract needs precise: {_approx(r['approx'])}: {where}")
    return list(dict.fromkeys(out))


# The status of a persistent-variants row whose variant the launcher or kernel does not have yet
# (bench/compile/cases.py variant_built): reported, not a failure of the check.
NOT_BUILT = "not built"


def summary(rows: list[dict], shared_limit: int) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    not_built = sum(1 for r in rows if r["status"] == NOT_BUILT)
    return dict(
        rows=len(rows),
        ok=len(ok),
        failed=len(rows) - len(ok) - not_built,
        not_built=not_built,
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
    approx = sorted({op for r in rows if r["status"] == "ok" for op in (r.get("approx") or {})})
    lines = [
        f"# Compile check: sm_{arch}",
        "",
        f"{meta['form']} form, Triton {meta['triton']}, torch {meta['torch']}, planned as {meta['gpu']}, "
        f"{meta['seconds']:.0f} s. Dtypes: {', '.join(meta.get('dtypes', []))}; strategies also compiled forced: "
        f"{', '.join(meta.get('forced', [])) or 'none'}.",
        "",
        f"- compiles: {s['rows']} rows, {s['ok']} ok, {s['failed']} failed, {s['spilled']} spilled"
        + (f", {s['not_built']} step variants not built yet" if s["not_built"] else ""),
        f"- max registers per thread: {s['max_registers']}; max shared memory: {s['max_shared_bytes']} B "
        f"(limit {s['shared_limit']} B per block)",
        f"- approximate fp math anywhere: {', '.join(approx) or 'none'} (the gate: rows that need precise math, "
        f"{', '.join(f'{d} {_prefixes(p)}' for d, p in PRECISE_MATH.items())}, may contain none)",
        f"- verdict: {'FAIL' if bad else 'pass'}",
        "",
    ]
    if bad:
        lines += ["## What fails the check", ""] + [f"- {b}" for b in bad] + [""]
    if notes:
        lines += ["## Forced strategies the dispatcher cannot plan", ""] + [f"- {n}" for n in notes] + [""]
    variant_rows = [r for r in rows if "variant" in r]
    if variant_rows:
        lines += variant_table(variant_rows)
    groups: dict = defaultdict(list)
    for r in rows:
        if "variant" in r:
            continue
        key = (r["kernel"], r["strategy"], r["dtype"], json.dumps(r["config"], sort_keys=True))
        groups[key].append(r)
    lines += [
        "## Kernels",
        "",
        "| kernel | strategy | dtype | config | status | regs | spill B | shared B | mma | approx fp math | picked by | shapes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kernel, strategy, dtype, _), rs in groups.items():
        r = _worst(rs)
        picks = "/".join(sorted({x["pick"] for x in rs}))
        shapes = "; ".join(dict.fromkeys(_shape(x["shape"]) for x in rs))
        status = r["status"] if r["status"] == "ok" else f"**failed**: {_first_line(r['error'])[:200]}"
        spill = f"**{r['spill_bytes']}**" if r["spill_bytes"] else r["spill_bytes"]
        lines.append(
            f"| {kernel} | {strategy} | {dtype} | {_config(r['config'])} | {status} | {_dash(r['registers'])} "
            f"| {_dash(spill)} | {_dash(r['shared_bytes'])} | {_dash(r['mma'])} | {_approx_cell(r)} | {picks} | {shapes} |"
        )
    return "\n".join(lines) + "\n"


def variant_table(rows: list[dict]) -> list[str]:
    """The persistent-variants family (python -m bench.compile --cases persistent-variants): one
    line per variant, dtype, reset_after, shape, block, warps and pass, persistent kernels only
    (a backward the persistent plan cannot hold runs another strategy: left out here). A
    candidate that spills or whose grid is not co-resident is a row too (the planner rejected it)."""
    lines = [
        "## Persistent step variants",
        "",
        "Every variant forced persistent at each hidden block and forward warp count (the backward "
        "runs 8 warps). per SM: programs one SM holds (estimate from registers, shared memory and "
        "threads); co-resident: the whole grid fits on the stand-in GPU at once, as the grid barrier needs.",
        "",
        "| variant | dtype | reset_after | H | B | BLOCK_H | warps | pass | status | regs | spill B | shared B | mma "
        "| programs | per SM | co-resident |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in rows:
        if "persistent" not in r["kernel"] and r["status"] == "ok":
            continue
        warps = r["config"].get("num_warps", r.get("warps"))
        key = (r["variant"], r["dtype"], r.get("reset_after", True), r["shape"].get("H"), r["shape"].get("B"),
               r.get("block_h"), warps, r["pass"])
        if key in seen:
            continue
        seen.add(key)
        if r["status"] == "ok":
            status = "ok"
        elif r["status"] == NOT_BUILT:
            status = r["error"]
        else:
            status = f"**failed**: {_first_line(r['error'])[:160]}"
        spill = f"**{r['spill_bytes']}**" if r.get("spill_bytes") else r.get("spill_bytes")
        co = r.get("co_resident")
        lines.append(
            f"| {r['variant']} | {r['dtype']} | {r.get('reset_after', True)} | {r['shape'].get('H')} | {r['shape'].get('B')} "
            f"| {r.get('block_h')} | {warps} | {r['pass']} | {status} | {_dash(r.get('registers'))} | {_dash(spill)} "
            f"| {_dash(r.get('shared_bytes'))} | {_dash(r.get('mma'))} | {_dash(r.get('programs'))} "
            f"| {_dash(r.get('resident_per_sm'))} | {'-' if co is None else ('yes' if co else '**no**')} |")
    return lines + [""]


_SHOWN = ("BLOCK_B", "BLOCK_H", "BLOCK_K", "BLOCK_HP", "BLOCK_Q", "BLOCK_T", "BLOCK_A", "BLOCK_D",
          "DOT_PRECISION", "PRECISION", "num_warps", "num_stages")


def _worst(rows: list[dict]) -> dict:
    """One line for a group of compiles of the same kernel and config (at several shapes, which
    can specialize differently): a failure if any, else the largest registers, spills, shared."""
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return failed[0]
    worst = dict(rows[0], **{k: max(r[k] for r in rows) for k in ("registers", "spill_bytes", "shared_bytes")})
    approx: dict = {}
    for r in rows:
        for op, n in (r.get("approx") or {}).items():
            approx[op] = max(approx.get(op, 0), n)
    return dict(worst, approx=dict(sorted(approx.items())))


def _approx(approx: dict) -> str:
    return ", ".join(f"{op} x{n}" for op, n in approx.items())


def _approx_cell(row: dict) -> str:
    """The approximate instructions and their counts; bold where PRECISE_MATH gates the row,
    "none" where it has none, "-" where nothing compiled."""
    if row["status"] != "ok" or row.get("approx") is None:
        return "-"
    if not row["approx"]:
        return "none"
    text = _approx(row["approx"])
    return f"**{text}**" if needs_precise_math(row) else text


def _prefixes(prefixes: tuple) -> str:
    return "every kernel" if "" in prefixes else "/".join(f"{p}*" for p in prefixes)


def _config(config: dict) -> str:
    return " ".join(f"{k}={config[k]}" for k in _SHOWN if k in config)


def _shape(shape: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items())


def _first_line(text) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _dash(value) -> str:
    return "-" if value is None else str(value)
