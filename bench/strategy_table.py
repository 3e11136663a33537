"""Every GRU recurrence strategy side by side with nn.GRU (cuDNN), at the shapes the dispatcher
must choose between, each provider timed two ways. CUDA only, except --summarize and --emit-plan:

    python bench/strategy_table.py --out DIR [--strategies rows,stepwise] [--T 512] [--forms eager,graphed]
    python bench/strategy_table.py --summarize FILE.json ...     (Markdown table, no GPU needed)
    python bench/strategy_table.py --emit-plan FILE.json ... [--plan-out PATH]
                                   (the dispatcher's table, fastgru/launchers/plan_table.json; bench/plan_emit.py)
    python bench/strategy_table.py --variants goal --out DIR [--budget-s 240]
                                   (the persistent kernel's variants beside nn.GRU; bench/variants.py)
    python bench/strategy_table.py --variants goal --dry-run [--budget-s S]
                                   (its rows, compiles and expected seconds; no GPU; exit 1 over S)

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

--variants SET runs bench/variants.py's matrix instead: per cell nn.GRU (eager and graphed) and the
persistent strategy forced under plan.persistent_choice(variant, block_h, num_warps), each variant
timed graphed only; rows add variant, block_h, num_warps, reset_after and vs_base (the base variant
at the dispatcher's block over this row). One file, strategies-variants-SET.json, written after
every row; with its budget spent it lists the rows not run ("not_run", "complete": false). Before
timing, a warm-up pool (bench/precompile.py, --precompile-workers, default min(8, cores - 2))
compiles every kernel the run needs in parallel processes into Triton's on-disk cache, within
what the budget leaves beyond the timing; each row records its warm-up ("precompile"), and a row
whose kernel hung in the warm-up is recorded as an error instead of run.
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

from bench import plan_emit, precompile  # noqa: E402
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
    if "ms" in row:  # a variant row is timed graphed only
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


def _reference_cell(dname, H, B, T, reset_after=True):
    """(nn.GRU in dtype ``dname``, input x, float64 reference output, the contract's error limit)
    for one shape. reset_after=False has no nn.GRU equivalent: the reference is fastgru's own
    reference loop in float64 on nn.GRU's parameters (the module is still returned: its
    parameters are the ones every provider loads)."""
    from fastgru.reference import gru_layer
    from fastgru.testing import tolerance

    dtype = DTYPES[dname]
    torch.manual_seed(H * 1000 + B)
    ref = nn.GRU(H, H).cuda()
    x = torch.randn(T, B, H, device="cuda", dtype=dtype)
    with torch.no_grad():
        if reset_after:
            gold = ref.double()(x.double())[0]
        else:
            w = [p.double() for p in (ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)]
            gold = gru_layer(x.double(), torch.zeros(B, H, device="cuda", dtype=torch.float64), *w, reset_after=False)[0]
    ref.to(dtype)
    ref.flatten_parameters()  # one contiguous weight buffer, as cuDNN wants (no per-call copy)
    tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    return ref, x, gold, tolerance(dtype, tf32)


def _time_row(row, make_module, x, gold, limit, warmup_ms, rep_ms, forms=FORMS, num_warps=None, block_h=None):
    """Build the provider (``make_module(row)``), run it once (the call that compiles; its plans
    recorded), check it against ``gold``, and time the ``forms`` asked for ("eager", "graphed").
    Everything goes into ``row`` (status ok, failed, skipped where the strategy cannot hold the
    shape, error); nothing is raised."""
    import triton.testing

    from fastgru.testing import rel_error

    t0 = time.perf_counter()
    try:
        module = make_module(row)
        step = _step(module, x, row["mode"])
        with _recorded_plans(num_warps, block_h) as plans:
            out = step()  # raises ValueError where the strategy cannot hold the shape
        if plans:
            row["plans"] = [_plan_dict(p) for p in plans]
        torch.cuda.synchronize()
        row["first_call_s"] = round(time.perf_counter() - t0, 3)
        row["rel_error"] = rel_error(out, gold)
        if not row["rel_error"] <= limit:
            row.update(status="failed", error=f"rel error {row['rel_error']:.3e} over {limit:.1e}")
            return
        row["status"] = "ok"
        if "eager" in forms:
            med, p20, p80 = triton.testing.do_bench(step, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
            row.update(ms=med, p20_ms=p20, p80_ms=p80, us_per_step=1000 * med / row["T"])
        if "graphed" in forms:
            _time_graphed(row, step, gold, limit, warmup_ms, rep_ms)
        else:
            row["graphed_status"] = "not measured"
    except ValueError as exc:  # the strategy cannot hold this shape
        row.update(status="skipped", error=str(exc)[:300])
    except Exception as exc:  # noqa: BLE001 - recorded, the table goes on
        row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")


def _plan_dict(plan) -> dict:
    """A plan's fields for the JSON, its persistent variant by name ("base", "prefetch+split", ...)."""
    d = dict(plan.__dict__)
    if "variant" in d:
        d["variant"] = getattr(d["variant"], "name", d["variant"])
    return d


def _fastgru_module(ref, strategy, reset_after=True, explain_x=None):
    """make_module for _time_row: fastgru.GRU with ``strategy`` (None: as dispatched) holding
    ``ref``'s parameters; the dispatched one records fastgru.explain's account in the row."""
    import fastgru

    def make(row):
        module = fastgru.GRU(ref.input_size, ref.hidden_size, strategy=strategy, reset_after=reset_after).cuda()
        module.to(ref.weight_hh_l0.dtype).load_state_dict(ref.state_dict())
        if explain_x is not None:
            with torch.set_grad_enabled(row["mode"] == "training"):
                probe = explain_x.detach().requires_grad_(row["mode"] == "training")
                row["explain"] = str(fastgru.explain(module, probe))
        return module
    return make


def measure(dtypes, modes, hiddens, batches, T, strategies, warmup_ms, rep_ms, num_warps=None, save=None, block_h=None,
            forms=FORMS):
    sm = torch.cuda.get_device_capability()
    rows = []
    for dname, mode, H, B in ((d, m, h, b) for d in dtypes for m in modes for h in hiddens for b in batches):
        ref, x, gold, limit = _reference_cell(dname, H, B, T)
        for name in ("nn.GRU", *strategies):
            row = dict(dtype=dname, mode=mode, H=H, B=B, T=T, provider=name)
            row["cudnn_algo"], row["cudnn_algo_reason"] = cudnn_algorithm(mode, dname, H, B, T, 1, sm)
            if name == "nn.GRU":
                make = lambda row: ref  # noqa: E731
            else:  # "dispatched": fastgru.GRU as a user gets it (the table, then the rules)
                make = _fastgru_module(ref, None if name == "dispatched" else name,
                                       explain_x=x if name == "dispatched" else None)
            _time_row(row, make, x, gold, limit, warmup_ms, rep_ms, forms, num_warps, block_h)
            rows.append(row)
            print(_line(row), flush=True)
            if save is not None:
                save(rows)
        base = next((r for r in rows[-1 - len(strategies):] if r["provider"] == "nn.GRU"), None)
        for r in rows[-len(strategies):]:
            add_ratios(base, r)
    return rows


def measure_variants(items, T, warmup_ms, rep_ms, nn_warmup_ms, nn_rep_ms, save=None, budget_s=None, costs=None,
                     precompiled=None, skip=None):
    """Time bench/variants.py's ``items`` cell by cell: nn.GRU eager and graphed, each persistent
    variant forced (strategy="persistent" under persistent_choice) and timed graphed. Each row
    records its variant, block_h, num_warps (None: the dispatcher's candidates chose; its plans
    say what ran) and reset_after, and its ratio to nn.GRU (add_ratios) and to the base variant
    at the dispatcher's block timed beside it (vs_base). With ``budget_s``, no row starts once
    the seconds spent plus its expected cost (``costs``, per item) pass the budget.
    ``precompiled`` ({item index: the warm-up pool's result}, bench/precompile.py): the row
    records it ("precompile": status, seconds, error); ``skip`` ({item index: reason}): rows not
    timed, recorded as errors (a kernel the warm-up saw hang). Returns (rows, items not run)."""
    from fastgru.launchers.plan import persistent_choice

    from bench import variants as V

    sm = torch.cuda.get_device_capability()
    start, rows, not_run = time.perf_counter(), [], []
    costs = costs or [0.0] * len(items)
    i = 0
    for cell in V.cells(items):
        first = i
        if budget_s is not None and time.perf_counter() - start + costs[i] > budget_s:
            not_run += items[i:]
            break
        dname, mode, reset_after, H, B = cell[0].cell
        ref, x, gold, limit = _reference_cell(dname, H, B, T, reset_after)
        cell_rows = []
        for item in cell:
            if budget_s is not None and i > first and time.perf_counter() - start + costs[i] > budget_s:
                not_run.append(item)
                i += 1
                continue
            i += 1
            row = dict(dtype=dname, mode=mode, H=H, B=B, T=T, reset_after=reset_after, provider=item.provider,
                       variant=item.variant, block_h=item.block_h, num_warps=item.num_warps, forms=list(item.forms))
            if reset_after:
                row["cudnn_algo"], row["cudnn_algo_reason"] = cudnn_algorithm(mode, dname, H, B, T, 1, sm)
            if precompiled and i - 1 in precompiled:
                row["precompile"] = {k: v for k, v in precompiled[i - 1].items() if k != "value"}
            if skip and i - 1 in skip:
                row.update(status="error", error=skip[i - 1], graphed_status="not measured")
            elif item.provider == V.BASELINE:
                _time_row(row, lambda row: ref, x, gold, limit, nn_warmup_ms, nn_rep_ms, item.forms)
            else:
                with persistent_choice(item.variant, item.block_h, item.num_warps):
                    _time_row(row, _fastgru_module(ref, "persistent", reset_after), x, gold, limit, warmup_ms, rep_ms,
                              item.forms)
            cell_rows.append(row)
            rows.append(row)
            print(_line(row), flush=True)
            if save is not None:
                save(rows, not_run)
        base = next((r for r in cell_rows if r["provider"] == V.BASELINE), None)
        same = next((r for r in cell_rows if r["provider"] == V.PERSISTENT and r["variant"] == "base"
                     and r["block_h"] is None and r["num_warps"] is None), None)
        for r in cell_rows:
            if r["provider"] != V.BASELINE:
                add_ratios(base, r)
                mine, theirs = plan_emit.best_form(r), plan_emit.best_form(same) if same else None
                if mine and theirs:
                    r["vs_base"] = theirs[0] / mine[0]
        if save is not None:
            save(rows, not_run)
    return rows, not_run


def _line(r):
    t = f"{r['ms']:9.3f} ms" if r.get("status") == "ok" and "ms" in r else f"{r.get('status'):>12}"
    g = f"graphed {r['graphed_ms']:9.3f} ms" if r.get("graphed_status") == "ok" else f"graphed {r.get('graphed_status', '-')}"
    err = f"{r['rel_error']:.2e}" if "rel_error" in r else "-"
    note = r.get("error") or r.get("graphed_error") or ""
    name = plan_emit.candidate_name(r) + ("" if r.get("reset_after", True) else " (reset_after=False)")
    return f"{r['dtype']:5} {r['mode']:9} H{r['H']:<5} B{r['B']:<4} {name:10} {t}  {g}  err {err}  {note[:120]}"


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
            if r["provider"] != "nn.GRU" or r.get("status") != "ok" or not r.get("reset_after", True):
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
            if r["provider"] == "nn.GRU" or mine is None or key not in base or not r.get("reset_after", True):
                continue  # reset_after=False rows have no nn.GRU to stand beside
            nn_row = base[key]
            nn_best = plan_emit.best_form(nn_row)
            entry = {"ms": mine[0], "form": mine[1], "vs_eager": nn_row["ms"] / mine[0],
                     "vs_graphed": nn_row["graphed_ms"] / mine[0] if _nn_graphed(nn_row) is None else None,
                     "graphed_note": _nn_graphed(nn_row), "headline": nn_best[0] / mine[0], "baseline": nn_best[1],
                     "own_graphed": r.get("graphed_status", "eager only")}
            providers, name = cells[key]["providers"], plan_emit.candidate_name(r)
            if name not in providers or entry["headline"] < providers[name]["headline"]:
                providers[name] = entry
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


def add_grid_arguments(p, strategies: str, dtypes: str, hiddens: str, batches: str) -> None:
    """The options both strategy tables (this one and bench/lstm_strategy_table.py) take, with
    each table's default grid: the forms, where to write, the (strategy, dtype, mode, H, B)
    grid at one T, the timing, and a tag for the file name."""
    p.add_argument("--forms", default=",".join(FORMS), help="eager, graphed or both (the CUDA-graph capture of each provider)")
    p.add_argument("--out")
    p.add_argument("--strategies", default=strategies)
    p.add_argument("--dtypes", default=dtypes)
    p.add_argument("--modes", default="inference,training")
    p.add_argument("--hiddens", default=hiddens)
    p.add_argument("--batches", default=batches)
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--warmup-ms", type=float, default=10.0)
    p.add_argument("--rep-ms", type=float, default=50.0)
    p.add_argument("--tag", default="", help="appended to the file name")


def parse_forms(p, text: str) -> tuple:
    """--forms: "eager" or "eager,graphed" (every timed row has an eager form), else the parser's error."""
    forms = tuple(text.split(","))
    if not forms or any(f not in FORMS for f in forms) or "eager" not in forms:
        p.error(f"--forms: expected 'eager' or 'eager,graphed', got {text!r}")
    return forms


def cuda_output(p, out: str | None, file_name: str, who: str, without_cuda: str = ""):
    """Where a measuring run writes and what it records about the machine: (DIR/file_name, with
    DIR = --out created, the environment, the arch "sm_XY"); None, with ``who`` saying on stderr
    that it needs a CUDA device (``without_cuda`` appended), where there is none. --out is
    required (the parser's error)."""
    if not out:
        p.error("--out is required")
    if not torch.cuda.is_available():
        print(f"{who}: needs a CUDA device{without_cuda}", file=sys.stderr)
        return None
    from fastgru.bench.environment import environment

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability())
    return folder / file_name, environment(torch.device("cuda")), arch


VARIANT_BUDGET_S = 240.0  # the variant step's share of bench/gpu_check.sh (under 4 minutes on an H100)


def _run_variants(p, a) -> int:
    """--variants SET: the dry run (CPU), or the run (CUDA) into DIR/strategies-variants-SET.json,
    written after every row; the document records the budget, the estimate and what did not run."""
    from bench import variants as V

    try:
        items = V.matrix(a.variants)
    except ValueError as exc:
        p.error(f"--variants: {exc}")
    budget = VARIANT_BUDGET_S if a.budget_s is None else a.budget_s
    if budget <= 0:
        p.error(f"--budget-s must be positive, got {budget}")
    tf32 = torch.backends.cudnn.allow_tf32
    workers = a.precompile_workers
    if workers is not None and workers < 0:
        p.error(f"--precompile-workers must be 0 or more, got {workers}")
    if workers is None:  # the dry run estimates the GPU machine; a run takes this machine's cores
        workers = V.WORKERS_H100 if a.dry_run else precompile.default_workers()
    times = (a.variant_warmup_ms, a.variant_rep_ms, a.warmup_ms, a.rep_ms)
    est = V.estimate(items, *times, tf32, workers)
    if a.dry_run:
        print(f"--variants {a.variants}, T = {a.T}" + ("" if a.T == V.T_DEFAULT else " (the estimate assumes T = 512)"))
        print(V.dry_run_text(items, est, budget))
        if est["seconds"] > budget:
            print(f"strategy_table: the expected {est['seconds']:.0f} s is over the budget of {budget:.0f} s",
                  file=sys.stderr)
            return 1
        return 0
    where = cuda_output(p, a.out, f"strategies-variants-{a.variants}{a.tag}.json", "strategy_table",
                        " (--dry-run lists the rows without one)")
    if where is None:
        return 2
    path, env, arch = where
    started = time.perf_counter()
    precompiled: dict = {}

    def save(rows, not_run, done=False):  # after every row, so a run cut short keeps what it measured
        doc = {"env": env, "command": " ".join(sys.argv), "tf32_cudnn": tf32, "arch": arch, "directions": 1,
               "variants": a.variants, "T": a.T, "budget_s": budget, "expected_s": est["seconds"],
               "precompile": precompiled.get("summary"),
               "elapsed_s": round(time.perf_counter() - started, 1), "complete": done and not not_run,
               "not_run": [dataclasses.asdict(i) for i in not_run], "rows": rows}
        path.write_text(json.dumps(doc, indent=1))

    print(f"--variants {a.variants}: {est['rows']} rows, {est['compiles']} compiles, expected {est['seconds']:.0f} s "
          f"(budget {budget:.0f} s; warm-up pool of {est['workers']} workers {est['breakdown']['warmup_s']:.0f} s)",
          flush=True)
    # The budget counts from here: the process's start-up is already spent. The warm-up pool may
    # take what the timing does not need once every kernel is in the cache; what it leaves out,
    # the timing process compiles (its rows' costs say so, and the budget stop cuts the tail).
    jobs = V.warm_jobs(items, tf32) if workers else []
    all_warm = V.estimate(items, *times, tf32, 0, warm={k for j in jobs for k in j.keys})
    deadline = budget - V.STARTUP_S - sum(all_warm["per_row"])
    pool = precompile.warm_up(jobs, workers, deadline, tf32, torch.backends.cuda.matmul.allow_tf32)
    precompiled["summary"] = {"workers": pool["workers"], "jobs": len(jobs), "deadline_s": round(max(deadline, 0), 1),
                              "expected_s": est["breakdown"]["warmup_s"], "elapsed_s": pool["elapsed_s"],
                              "counts": pool["counts"], "T": precompile.T_WARM}
    if jobs:
        print(f"warm-up pool: {len(jobs)} jobs on {pool['workers']} workers in {pool['elapsed_s']:.0f} s: "
              + ", ".join(f"{n} {k}" for k, n in sorted(pool["counts"].items())), flush=True)
        for index, r in sorted(pool["results"].items()):
            if r["status"] not in ("ok", "not_run", "unfinished"):
                print(f"  warm-up of row {index + 1} ({items[index].describe()}): {r['status']} {r.get('error', '')}")
    costs = V.estimate(items, *times, tf32, 0, warm=pool["warm"])["per_row"]
    skip = precompile.hung_rows(items, jobs, pool["results"], tf32)
    rows, not_run = measure_variants(items, a.T, a.variant_warmup_ms, a.variant_rep_ms, a.warmup_ms, a.rep_ms, save,
                                     budget - V.STARTUP_S - pool["elapsed_s"], costs, pool["results"], skip)
    save(rows, not_run, done=True)
    if not_run:
        print(f"budget spent: {len(not_run)} rows not run (listed in the JSON)")
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the Markdown summary of these files and exit")
    p.add_argument("--emit-plan", nargs="+", metavar="JSON",
                   help="write the dispatcher's plan table from these result files and exit (no GPU needed)")
    p.add_argument("--plan-out", default=None, help=f"where --emit-plan writes (default {plan_emit.DEFAULT_OUT.relative_to(plan_emit.ROOT)})")
    add_grid_arguments(p, strategies="rows,stepwise", dtypes="bf16,fp32", hiddens="256,512,1024",
                       batches="1,8,32,128")
    p.add_argument("--num-warps", type=int, default=None, help="experiment: persistent forward kernels with this many warps (the backward keeps its own)")
    p.add_argument("--block-h", default=None, help="experiment: persistent hidden-block sizes to try, e.g. 16 or 64,32,16")
    p.add_argument("--variants", default=None, metavar="SET",
                   help="time the persistent kernel's variants beside nn.GRU instead (bench/variants.py: goal, smoke); "
                        "--dtypes/--modes/--hiddens/--batches/--strategies do not apply, the set decides")
    p.add_argument("--dry-run", action="store_true",
                   help="with --variants: list every row, the distinct compiles and the expected seconds on an H100, "
                        "and exit (non-zero when over --budget-s); no GPU needed")
    p.add_argument("--budget-s", type=float, default=None,
                   help="with --variants: no row starts once the seconds spent plus its expected cost pass this "
                        f"(default {VARIANT_BUDGET_S:.0f}; the JSON lists the rows not run)")
    p.add_argument("--precompile-workers", type=int, default=None,
                   help="with --variants: compile every kernel first in this many parallel worker processes "
                        "(bench/precompile.py; Triton's on-disk cache hands them to the timing process); 0: off; "
                        "default min(8, CPU cores - 2), and 8 for the dry run's estimate (the H100 machine's 16 cores)")
    p.add_argument("--variant-warmup-ms", type=float, default=5.0, help="with --variants: do_bench warm-up of a variant row")
    p.add_argument("--variant-rep-ms", type=float, default=25.0, help="with --variants: do_bench repetitions of a variant row")
    a = p.parse_args(argv)
    if a.variants:
        return _run_variants(p, a)
    if a.dry_run:
        p.error("--dry-run goes with --variants")
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
    forms = parse_forms(p, a.forms)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    strategies = a.strategies.split(",")
    where = cuda_output(p, a.out, f"strategies-{'-'.join(strategies)}{a.tag}.json", "strategy_table")
    if where is None:
        return 2
    path, env, arch = where

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
