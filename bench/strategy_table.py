"""Every GRU recurrence strategy side by side with nn.GRU (cuDNN), at the shapes the dispatcher
must choose between. CUDA only:

    python bench/strategy_table.py --out DIR [--strategies rows,stepwise] [--T 512]
    python bench/strategy_table.py --summarize FILE.json ...     (Markdown table, no GPU needed)

For each (dtype, mode, H, B) it checks each strategy's output against a float64 cuDNN run
(a failing strategy is recorded, not timed), times it with triton.testing.do_bench (median of
device-event timings, L2 cleared between repetitions) and writes DIR/strategies-<names>.json
with the environment, every row and its ratio to nn.GRU. The dispatcher's table is read off
these files; a strategy that cannot hold a shape (persistent) is recorded as skipped.
"""

import argparse
import dataclasses
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _step(module, x, mode):
    if mode == "inference":
        def run():
            with torch.no_grad():
                return module(x)[0]
        return run
    grad = torch.randn(x.shape[0], x.shape[1], module.hidden_size, device=x.device, dtype=x.dtype)
    xg = x.detach().requires_grad_()

    def run():
        out = module(xg)[0]
        out.backward(grad)
        return out
    return run


@contextmanager
def _recorded_plans(num_warps=None, block_h=None):
    """The plans the layer's launchers pick, in order; and two experiments patched in: the
    persistent forward's warp count, the persistent hidden-block sizes tried."""
    from fastgru.launchers import gru_layer as layer_launchers
    from fastgru.launchers import plan as planner

    original, sizes, seen = layer_launchers.plan_gru, planner.PERSISTENT_BLOCK_H, []

    def recording(*args, **kwargs):
        plan = original(*args, **kwargs)
        if num_warps and plan.strategy == "persistent":
            plan = dataclasses.replace(plan, num_warps=num_warps)
        seen.append(plan)
        return plan

    layer_launchers.plan_gru = recording
    if block_h:
        planner.PERSISTENT_BLOCK_H = tuple(block_h)
    try:
        yield seen
    finally:
        layer_launchers.plan_gru, planner.PERSISTENT_BLOCK_H = original, sizes


def measure(dtypes, modes, hiddens, batches, T, strategies, warmup_ms, rep_ms, num_warps=None, save=None, block_h=None):
    import triton.testing

    import fastgru
    from fastgru.testing import rel_error, tolerance

    rows = []
    for dname, mode, H, B in ((d, m, h, b) for d in dtypes for m in modes for h in hiddens for b in batches):
        dtype = DTYPES[dname]
        torch.manual_seed(H * 1000 + B)
        ref = nn.GRU(H, H).cuda()
        x = torch.randn(T, B, H, device="cuda", dtype=dtype)
        with torch.no_grad():
            gold = ref.double()(x.double())[0]
        ref.to(dtype)
        ref.flatten_parameters()  # one contiguous weight buffer, as cuDNN wants (no per-call copy)
        tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32
        limit = tolerance(dtype, tf32)
        for name in ("nn.GRU", *strategies):
            row = dict(dtype=dname, mode=mode, H=H, B=B, T=T, provider=name)
            t0 = time.perf_counter()
            try:
                if name == "nn.GRU":
                    module = ref
                else:
                    module = fastgru.GRU(H, H, strategy=name).cuda().to(dtype)
                    module.load_state_dict(ref.state_dict())
                step = _step(module, x, mode)
                with _recorded_plans(num_warps, block_h) as plans:
                    out = step()  # raises ValueError where the strategy cannot hold the shape
                if plans:
                    row["plans"] = [p.__dict__ for p in plans]
                torch.cuda.synchronize()
                row["first_call_s"] = round(time.perf_counter() - t0, 3)
                row["rel_error"] = rel_error(out, gold)
                if not row["rel_error"] <= limit:
                    row.update(status="failed", error=f"rel error {row['rel_error']:.3e} over {limit:.1e}")
                else:
                    med, p20, p80 = triton.testing.do_bench(step, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
                    row.update(status="ok", ms=med, p20_ms=p20, p80_ms=p80, us_per_step=1000 * med / T)
            except ValueError as exc:  # the strategy cannot hold this shape
                row.update(status="skipped", error=str(exc)[:300])
            except Exception as exc:  # noqa: BLE001 - recorded, the table goes on
                row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            rows.append(row)
            print(_line(row), flush=True)
            if save is not None:
                save(rows)
        base = next((r for r in rows[-1 - len(strategies):] if r["provider"] == "nn.GRU" and r["status"] == "ok"), None)
        for r in rows[-len(strategies):]:
            if base and r.get("status") == "ok":
                r["speedup_vs_nn_gru"] = base["ms"] / r["ms"]
    return rows


def _line(r):
    t = f"{r['ms']:9.3f} ms" if r.get("status") == "ok" else f"{r.get('status'):>12}"
    err = f"{r['rel_error']:.2e}" if "rel_error" in r else "-"
    return f"{r['dtype']:5} {r['mode']:9} H{r['H']:<5} B{r['B']:<4} {r['provider']:10} {t}  err {err}  {r.get('error', '')[:120]}"


def summarize(paths):
    """Markdown: per (dtype, mode, H, B), each strategy's median and its ratio to the nn.GRU row
    timed beside it in the same file (cuDNN's own time moves between runs, so never across files)."""
    cells = {}
    for path in paths:
        rows = json.loads(Path(path).read_text())["rows"]
        base = {}
        for r in rows:
            key = (r["dtype"], r["mode"], r["H"], r["B"])
            if r["provider"] == "nn.GRU" and r.get("status") == "ok":
                base[key] = r["ms"]
            elif r.get("status") == "ok" and key in base:
                cell = cells.setdefault(key, {})
                cell[r["provider"]] = (r["ms"], base[key] / r["ms"])
    lines = ["| dtype | mode | H | B | " + " | ".join(s for s in ("persistent", "stepwise", "rows")) + " | best |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(cells, key=lambda k: (k[0], k[1], k[2], k[3])):
        cell = cells[key]
        shown = [f"{cell[s][0]:.2f} ms ({cell[s][1]:.2f}x)" if s in cell else "-" for s in ("persistent", "stepwise", "rows")]
        best = max(cell, key=lambda s: cell[s][1])
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(shown) + f" | {best} {cell[best][1]:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the Markdown summary of these files and exit")
    p.add_argument("--out")
    p.add_argument("--strategies", default="rows,stepwise")
    p.add_argument("--dtypes", default="bf16,fp32")
    p.add_argument("--modes", default="inference,training")
    p.add_argument("--hiddens", default="256,512,1024")
    p.add_argument("--batches", default="1,8,32,128")
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--warmup-ms", type=float, default=10.0)
    p.add_argument("--rep-ms", type=float, default=50.0)
    p.add_argument("--num-warps", type=int, default=None, help="experiment: persistent forward kernels with this many warps (the backward keeps its own)")
    p.add_argument("--block-h", default=None, help="experiment: persistent hidden-block sizes to try, e.g. 16 or 64,32,16")
    p.add_argument("--tag", default="", help="appended to the file name")
    a = p.parse_args(argv)
    if a.summarize:
        print(summarize(a.summarize))
        return 0
    if not a.out:
        p.error("--out is required")
    if not torch.cuda.is_available():
        print("strategy_table: needs a CUDA device", file=sys.stderr)
        return 2
    from fastgru.bench.environment import environment

    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    strategies = a.strategies.split(",")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"strategies-{'-'.join(strategies)}{a.tag}.json"
    env = environment(torch.device("cuda"))

    def save(rows):  # after every row, so a run cut short by its time limit keeps what it measured
        doc = {"env": env, "command": " ".join(sys.argv), "tf32_cudnn": torch.backends.cudnn.allow_tf32,
               "num_warps_override": a.num_warps, "block_h_override": a.block_h, "rows": rows}
        path.write_text(json.dumps(doc, indent=1))

    rows = measure(a.dtypes.split(","), a.modes.split(","), ints(a.hiddens), ints(a.batches), a.T,
                   strategies, a.warmup_ms, a.rep_ms, a.num_warps, save,
                   [int(v) for v in a.block_h.split(",")] if a.block_h else None)
    save(rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
