"""Every GRU recurrence strategy side by side with nn.GRU (cuDNN), at the shapes the dispatcher
must choose between, each provider timed two ways. CUDA only, except --summarize and --emit-plan:

    python bench/strategy_table.py --out DIR [--strategies rows,stepwise] [--T 512] [--forms eager,graphed]
    python bench/strategy_table.py --summarize FILE.json ...     (Markdown table, no GPU needed)
    python bench/strategy_table.py --emit-plan FILE.json ... [--plan-out PATH]
                                   (the dispatcher's table, fastgru/launchers/plan_table.json; bench/plan_emit.py)

For each (dtype, mode, H, B) it checks each provider's output against a float64 cuDNN run (a
failing provider is recorded, not timed) and times it with triton.testing.do_bench (median of
device-event timings, L2 cleared between repetitions) in two forms:

* eager: the Python call as a user makes it (inference: the forward under no_grad; training:
  the forward and the backward, with static inputs);
* graphed: the same call captured in a CUDA graph (warmed up on a side stream, captured with
  torch.cuda.graph, the replay timed and its output checked like the eager one). A user who
  cares about launch overhead captures nn.GRU this way; where a provider cannot be captured the
  row says so (graphed_status, graphed_error).

Each strategy row keeps both times and three ratios, each nn.GRU time over the strategy's faster
form: vs_nn_gru_eager, vs_nn_gru_graphed, and the headline vs_nn_gru against the faster nn.GRU
form (baseline names it); speedup_vs_nn_gru stays eager over eager, as in the older files. Every
row also names the cuDNN algorithm PyTorch asks for at that shape (bench/cudnn_algo.py). DIR gets
strategies-<names>.json with the environment and every row.
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

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import plan_emit  # noqa: E402
from bench.cudnn_algo import arch_of_device_name, cudnn_algorithm  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
FORMS = ("eager", "graphed")
PROVIDER_ORDER = ("dispatched", "persistent", "stepwise", "rows", "cudnn")


def _step(module, x, mode):
    """The call timed: inference, the forward under no_grad; training, the forward and the
    backward into fresh gradients (set to None first, as a training loop's zero_grad does, so a
    CUDA-graph capture allocates them from its own pool and every replay rewrites them)."""
    if mode == "inference":
        def run():
            with torch.no_grad():
                return module(x)[0]
        return run
    grad = torch.randn(x.shape[0], x.shape[1], module.hidden_size, device=x.device, dtype=x.dtype)
    xg = x.detach().requires_grad_()

    def run():
        module.zero_grad(set_to_none=True)
        xg.grad = None
        out = module(xg)[0]
        out.backward(grad)
        return out
    return run


def capture(step, warmup: int = 3):
    """(graph, static output) of ``step`` captured in a CUDA graph by the standard recipe: warm-up
    calls on a side stream (lazy allocations and autotuning happen outside the capture), then
    torch.cuda.graph. Replaying the graph reruns the call on the same static input."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out


def _time_graphed(row, step, gold, limit, warmup_ms, rep_ms):
    """The graphed form of a row whose eager form passed: capture, replay once, check the output
    like the eager one, time the replay. Any failure is recorded in the row, never raised."""
    import triton.testing

    from fastgru.testing import rel_error

    graph = None
    try:
        graph, out = capture(step)
        graph.replay()
        torch.cuda.synchronize()
        row["graphed_rel_error"] = rel_error(out, gold)
        if not row["graphed_rel_error"] <= limit:
            row.update(graphed_status="failed", graphed_error=f"graphed rel error {row['graphed_rel_error']:.3e} over {limit:.1e}")
            return
        med, p20, p80 = triton.testing.do_bench(graph.replay, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
        row.update(graphed_status="ok", graphed_ms=med, graphed_p20_ms=p20, graphed_p80_ms=p80,
                   graphed_us_per_step=1000 * med / row["T"])
    except Exception as exc:  # noqa: BLE001 - capture refused (host sync, allocation, ...): recorded
        row.update(graphed_status="error", graphed_error=f"capture: {type(exc).__name__}: {str(exc)[:300]}")
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            pass
    finally:
        del graph


def add_ratios(base: dict | None, row: dict) -> None:
    """Ratios of an ok strategy row to the nn.GRU row timed beside it: each nn.GRU form's time over
    the strategy's faster form, the headline against the faster nn.GRU form, and eager over eager."""
    mine = plan_emit.best_form(row)
    if base is None or base.get("status") != "ok" or mine is None:
        return
    row["speedup_vs_nn_gru"] = base["ms"] / row["ms"]
    row["vs_nn_gru_eager"] = base["ms"] / mine[0]
    if base.get("graphed_status") == "ok":
        row["vs_nn_gru_graphed"] = base["graphed_ms"] / mine[0]
    best = plan_emit.best_form(base)
    row["vs_nn_gru"], row["baseline"] = best[0] / mine[0], best[1]


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


def measure(dtypes, modes, hiddens, batches, T, strategies, warmup_ms, rep_ms, num_warps=None, save=None, block_h=None,
            forms=FORMS):
    import triton.testing

    import fastgru
    from fastgru.testing import rel_error, tolerance

    sm = torch.cuda.get_device_capability()
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
            row["cudnn_algo"], row["cudnn_algo_reason"] = cudnn_algorithm(mode, dname, H, B, T, 1, sm)
            t0 = time.perf_counter()
            try:
                if name == "nn.GRU":
                    module = ref
                else:  # "dispatched": fastgru.GRU as a user gets it (the table, then the rules)
                    module = fastgru.GRU(H, H, strategy=None if name == "dispatched" else name).cuda().to(dtype)
                    module.load_state_dict(ref.state_dict())
                    if name == "dispatched":
                        with torch.set_grad_enabled(mode == "training"):
                            probe = x.detach().requires_grad_(mode == "training")
                            row["explain"] = str(fastgru.explain(module, probe))
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
                    if "graphed" in forms:
                        _time_graphed(row, step, gold, limit, warmup_ms, rep_ms)
                    else:
                        row["graphed_status"] = "not measured"
            except ValueError as exc:  # the strategy cannot hold this shape
                row.update(status="skipped", error=str(exc)[:300])
            except Exception as exc:  # noqa: BLE001 - recorded, the table goes on
                row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            rows.append(row)
            print(_line(row), flush=True)
            if save is not None:
                save(rows)
        base = next((r for r in rows[-1 - len(strategies):] if r["provider"] == "nn.GRU"), None)
        for r in rows[-len(strategies):]:
            add_ratios(base, r)
    return rows


def _line(r):
    t = f"{r['ms']:9.3f} ms" if r.get("status") == "ok" else f"{r.get('status'):>12}"
    g = f"graphed {r['graphed_ms']:9.3f} ms" if r.get("graphed_status") == "ok" else f"graphed {r.get('graphed_status', '-')}"
    err = f"{r['rel_error']:.2e}" if "rel_error" in r else "-"
    note = r.get("error") or r.get("graphed_error") or ""
    return f"{r['dtype']:5} {r['mode']:9} H{r['H']:<5} B{r['B']:<4} {r['provider']:10} {t}  {g}  err {err}  {note[:120]}"


def _nn_graphed(base: dict) -> str | None:
    """nn.GRU's graphed time as a cell, or why there is none ("eager only" for the older files)."""
    status = base.get("graphed_status")
    if status is None:
        return "eager only"
    if status != "ok":
        return "capture failed" if status in ("error", "failed") else status
    return None


def summary_cells(paths) -> dict:
    """{(dtype, mode, H, B): cell} over these files. A cell holds the cuDNN algorithm, nn.GRU's
    eager and graphed times per file, and per strategy its time and ratios to the nn.GRU row timed
    beside it in the same file (cuDNN's own time moves between runs, so never across files);
    where several files measured a strategy at a shape, the one with the worst headline ratio
    (the same rule as the plan table, bench/plan_emit.py)."""
    cells: dict = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        arch = doc.get("arch") or arch_of_device_name((doc.get("env") or {}).get("device_name")) or "unknown"
        base = {}
        for r in doc["rows"]:
            key = (r["dtype"], r["mode"], r["H"], r["B"])
            if r["provider"] != "nn.GRU" or r.get("status") != "ok":
                continue
            base[key] = r
            cell = cells.setdefault(key, {"algo": set(), "eager": [], "graphed": [], "graphed_note": set(), "providers": {}})
            if r.get("cudnn_algo"):
                cell["algo"].add(r["cudnn_algo"])
            elif arch != "unknown":
                cell["algo"].add(cudnn_algorithm(r["mode"], r["dtype"], r["H"], r["B"], r["T"], 1, arch)[0])
            cell["eager"].append(r["ms"])
            note = _nn_graphed(r)
            if note is None:
                cell["graphed"].append(r["graphed_ms"])
            else:
                cell["graphed_note"].add(note)
        for r in doc["rows"]:
            key = (r["dtype"], r["mode"], r["H"], r["B"])
            mine = plan_emit.best_form(r)
            if r["provider"] == "nn.GRU" or mine is None or key not in base:
                continue
            nn_row = base[key]
            nn_best = plan_emit.best_form(nn_row)
            entry = {"ms": mine[0], "form": mine[1], "vs_eager": nn_row["ms"] / mine[0],
                     "vs_graphed": nn_row["graphed_ms"] / mine[0] if _nn_graphed(nn_row) is None else None,
                     "graphed_note": _nn_graphed(nn_row), "headline": nn_best[0] / mine[0], "baseline": nn_best[1],
                     "own_graphed": r.get("graphed_status", "eager only")}
            providers = cells[key]["providers"]
            if r["provider"] not in providers or entry["headline"] < providers[r["provider"]]["headline"]:
                providers[r["provider"]] = entry
    return cells


def _ms_range(values) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"


def summarize(paths) -> str:
    """Markdown: per (dtype, mode, H, B), the cuDNN algorithm nn.GRU runs, nn.GRU's eager and
    graphed times, and per strategy its faster form's time with both ratios (nn.GRU eager and
    nn.GRU graphed over it), and the headline: the best strategy against the faster nn.GRU form."""
    cells = summary_cells(paths)
    names = sorted({p for c in cells.values() for p in c["providers"]},
                   key=lambda n: (PROVIDER_ORDER.index(n) if n in PROVIDER_ORDER else len(PROVIDER_ORDER), n))
    lines = ["| dtype | mode | H | B | nn.GRU algorithm | nn.GRU eager ms | nn.GRU graphed ms | "
             + " | ".join(names) + " | headline (vs faster nn.GRU) |",
             "|" + "---|" * (8 + len(names))]
    for key in sorted(cells):
        cell = cells[key]
        graphed = " / ".join(filter(None, [_ms_range(cell["graphed"]) if cell["graphed"] else "",
                                           ", ".join(sorted(cell["graphed_note"]))]))
        shown = []
        for n in names:
            e = cell["providers"].get(n)
            if e is None:
                shown.append("-")
                continue
            vs_g = f" / {e['vs_graphed']:.2f}x graphed" if e["vs_graphed"] is not None else ""
            form = " graphed" if e["form"] == "graphed" else ""
            shown.append(f"{e['ms']:.2f} ms{form}: {e['vs_eager']:.2f}x eager{vs_g}")
        if cell["providers"]:
            best = max(cell["providers"], key=lambda n: cell["providers"][n]["headline"])
            b = cell["providers"][best]
            headline = f"{best} {b['headline']:.2f}x vs {b['baseline']}" + ("" if b["vs_graphed"] is not None else " (eager only)")
        else:
            headline = "-"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {', '.join(sorted(cell['algo'])) or '-'} | "
                     f"{_ms_range(cell['eager'])} | {graphed} | " + " | ".join(shown) + f" | {headline} |")
    lines += ["", "Ratios: nn.GRU's time over the strategy's faster form, nn.GRU from the same file; "
              "\"eager only\": that file timed nn.GRU without a CUDA graph, so the graphed baseline is unknown; "
              "where several files measured a strategy at a shape, its worst headline ratio."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the Markdown summary of these files and exit")
    p.add_argument("--emit-plan", nargs="+", metavar="JSON",
                   help="write the dispatcher's plan table from these result files and exit (no GPU needed)")
    p.add_argument("--plan-out", default=None, help=f"where --emit-plan writes (default {plan_emit.DEFAULT_OUT.relative_to(plan_emit.ROOT)})")
    p.add_argument("--forms", default=",".join(FORMS), help="eager, graphed or both (the CUDA-graph capture of each provider)")
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
    if a.emit_plan:
        out_path = Path(a.plan_out) if a.plan_out else plan_emit.DEFAULT_OUT
        doc = plan_emit.emit(a.emit_plan, out=Path(a.plan_out) if a.plan_out else None)
        plan_emit.write(doc, out_path)
        print(plan_emit.summary(doc))
        print(f"wrote {out_path} ({len(doc['entries'])} entries)")
        return 0
    forms = tuple(a.forms.split(","))
    if not forms or any(f not in FORMS for f in forms) or "eager" not in forms:
        p.error(f"--forms: expected 'eager' or 'eager,graphed', got {a.forms!r}")
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
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability())

    def save(rows):  # after every row, so a run cut short by its time limit keeps what it measured
        doc = {"env": env, "command": " ".join(sys.argv), "tf32_cudnn": torch.backends.cudnn.allow_tf32,
               "arch": arch, "reset_after": True, "directions": 1, "forms": list(forms),
               "num_warps_override": a.num_warps, "block_h_override": a.block_h, "rows": rows}
        path.write_text(json.dumps(doc, indent=1))

    rows = measure(a.dtypes.split(","), a.modes.split(","), ints(a.hiddens), ints(a.batches), a.T,
                   strategies, a.warmup_ms, a.rep_ms, a.num_warps, save,
                   [int(v) for v in a.block_h.split(",")] if a.block_h else None, forms)
    save(rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
