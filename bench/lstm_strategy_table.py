"""The LSTM's strategy table: nn.LSTM (cuDNN) and fastgru.LSTM with each recurrence strategy side by
side, each timed eager and captured in a CUDA graph, at the shapes where the dispatcher must
choose (by default the ones where PyTorch runs cuDNN's persistent LSTM, bench/lstm_cudnn.py):

    python bench/lstm_strategy_table.py --out DIR [--strategies dispatched,persistent,rows,stepwise]
           [--dtypes fp16,bf16] [--hiddens 768,256,512,1024] [--batches 16,8,64,128] [--T 512]
           [--forms eager,graphed] [--budget-s S]                     (CUDA: DIR/strategies-lstm-<names>.json)
    python bench/lstm_strategy_table.py --dry-run [same options]      (the rows and cuDNN's algorithm; no GPU)
    python bench/lstm_strategy_table.py --summarize FILE.json ...     (Markdown, no GPU)

It is bench/strategy_table.py's measurement with nn.LSTM in nn.GRU's place, and uses its functions
(the timed step, the capture, the check-then-time of a row, the ratios): one layer, one direction,
input size = H, each provider checked against nn.LSTM in float64 before it is timed. Ratios are
nn.LSTM's time over the strategy's faster form: vs_nn_lstm_eager, vs_nn_lstm_graphed and the
headline vs_nn_lstm against nn.LSTM's faster form (baseline names it). ``dispatched`` is
fastgru.LSTM as a user gets it; ``cudnn`` is its strategy='cudnn' (PyTorch's own op). With
--budget-s no new (dtype, mode, H, B) cell starts once that many seconds are spent (the JSON
lists the cells not run).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import strategy_table as ST  # noqa: E402
from bench.lstm_cudnn import lstm_algorithm  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BASELINE = "nn.LSTM"
STRATEGIES = ("dispatched", "persistent", "rows", "stepwise", "cudnn")
# strategy_table's ratio keys, named for nn.GRU there.
_RATIO_KEYS = ("speedup_vs_nn_gru", "vs_nn_gru_eager", "vs_nn_gru_graphed", "vs_nn_gru")


def cells(dtypes, modes, hiddens, batches):
    """(dtype, mode, H, B) in run order: the first of each list first."""
    return [(d, m, h, b) for d in dtypes for m in modes for h in hiddens for b in batches]


def reference_cell(dname, H, B, T):
    """(nn.LSTM in dtype ``dname``, input x, float64 output, the contract's error limit)."""
    from fastgru.testing import tolerance

    dtype = DTYPES[dname]
    torch.manual_seed(H * 1000 + B)
    ref = nn.LSTM(H, H).cuda()
    x = torch.randn(T, B, H, device="cuda", dtype=dtype)
    with torch.no_grad():
        gold = ref.double()(x.double())[0]
    ref.to(dtype)
    ref.flatten_parameters()
    tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    return ref, x, gold, tolerance(dtype, tf32)


def fastgru_module(ref, strategy, explain_x=None):
    """make_module for strategy_table._time_row: fastgru.LSTM with ``strategy`` (None: as
    dispatched) holding ``ref``'s parameters; the dispatched one records fastgru.explain's
    account in the row where explain takes an LSTM."""
    import fastgru

    def make(row):
        module = fastgru.LSTM(ref.input_size, ref.hidden_size, strategy=strategy).cuda()
        module.to(ref.weight_hh_l0.dtype).load_state_dict(ref.state_dict())
        if explain_x is not None:
            try:
                with torch.set_grad_enabled(row["mode"] == "training"):
                    probe = explain_x.detach().requires_grad_(row["mode"] == "training")
                    row["explain"] = str(fastgru.explain(module, probe))
            except Exception as exc:  # noqa: BLE001 - the row is timed all the same
                row["explain"] = f"not available: {type(exc).__name__}: {str(exc)[:200]}"
        return module
    return make


def lstm_ratios(base, row) -> None:
    """strategy_table.add_ratios against the nn.LSTM row, its keys named for nn.LSTM."""
    ST.add_ratios(base, row)
    for key in _RATIO_KEYS:
        if key in row:
            row[key.replace("gru", "lstm")] = row.pop(key)


def measure(dtypes, modes, hiddens, batches, T, strategies, warmup_ms, rep_ms, forms=ST.FORMS, budget_s=None,
            save=None):
    """Every cell's rows (nn.LSTM first, then each strategy); returns (rows, cells not run)."""
    sm = torch.cuda.get_device_capability()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    start, rows, not_run = time.perf_counter(), [], []
    todo = cells(dtypes, modes, hiddens, batches)
    for n, (dname, mode, H, B) in enumerate(todo):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            not_run = [dict(zip(("dtype", "mode", "H", "B"), c)) for c in todo[n:]]
            break
        ref, x, gold, limit = reference_cell(dname, H, B, T)
        algo = lstm_algorithm(mode, dname, H, B, 1, sm, sm_count=sms)
        cell_rows = []
        for name in (BASELINE, *strategies):
            row = dict(dtype=dname, mode=mode, H=H, B=B, T=T, provider=name, cudnn_algo=algo[0], cudnn_algo_reason=algo[1])
            if name == BASELINE:
                make = lambda row: ref  # noqa: E731
            else:
                make = fastgru_module(ref, None if name == "dispatched" else name, x if name == "dispatched" else None)
            ST._time_row(row, make, x, gold, limit, warmup_ms, rep_ms, forms)
            cell_rows.append(row)
            rows.append(row)
            print(ST._line(row), flush=True)
            if save is not None:
                save(rows, not_run)
        for r in cell_rows[1:]:
            lstm_ratios(cell_rows[0], r)
    return rows, not_run


def dry_run_text(dtypes, modes, hiddens, batches, T, strategies) -> str:
    """The rows a run would time, per cell the cuDNN algorithm nn.LSTM gets on an H100."""
    lines = [f"{len(cells(dtypes, modes, hiddens, batches))} cells x {1 + len(strategies)} providers "
             f"({BASELINE}, {', '.join(strategies)}), T = {T}"]
    for dname, mode, H, B in cells(dtypes, modes, hiddens, batches):
        algo, why = lstm_algorithm(mode, dname, H, B, 1, 90)
        lines.append(f"{dname:5} {mode:9} H{H:<5} B{B:<4} nn.LSTM: {algo} ({why})")
    return "\n".join(lines)


def summarize(paths) -> str:
    """Markdown: per (dtype, mode, H, B), nn.LSTM's algorithm and its eager and graphed us per step,
    then each strategy's faster form in us per step with the headline ratio vs nn.LSTM's faster form."""
    from bench.plan_emit import best_form

    table: dict = {}
    names: list = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for r in doc["rows"]:
            key = (r["dtype"], r["mode"], r["H"], r["B"])
            cell = table.setdefault(key, {"T": r["T"], "algo": r.get("cudnn_algo", "-"), "nn": None, "providers": {}})
            if r["provider"] == BASELINE:
                cell["nn"] = r
                continue
            names += [r["provider"]] if r["provider"] not in names else []
            best = best_form(r)
            if best is None:
                cell["providers"][r["provider"]] = r.get("status", "-")
            else:
                ratio = r.get("vs_nn_lstm")
                cell["providers"][r["provider"]] = (f"{1000 * best[0] / r['T']:.2f} {best[1]}"
                                                    + (f" ({ratio:.2f}x)" if ratio else ""))
    lines = ["| dtype | mode | H | B | nn.LSTM algorithm | nn.LSTM eager us/step | nn.LSTM graphed us/step | "
             + " | ".join(names) + " |", "|" + "---|" * (7 + len(names))]
    for key in sorted(table):
        cell, nn_row = table[key], table[key]["nn"]

        def us(field):
            return f"{1000 * nn_row[field] / cell['T']:.2f}" if nn_row and isinstance(nn_row.get(field), float) else "-"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {cell['algo']} | {us('ms')} | {us('graphed_ms')} | "
                     + " | ".join(str(cell["providers"].get(n, "-")) for n in names) + " |")
    lines += ["", "Per strategy: us per step of its faster form (eager or graphed) and, in brackets, nn.LSTM's "
              "faster form over it (the headline, from the same file)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ST.add_grid_arguments(p, strategies="dispatched,persistent,rows,stepwise", dtypes="fp16,bf16",
                          hiddens="768,256,512,1024", batches="16,8,64,128")
    p.add_argument("--budget-s", type=float, default=None, help="no new cell starts once this many seconds are spent")
    p.add_argument("--dry-run", action="store_true", help="list the rows and cuDNN's algorithm per cell; no GPU")
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the Markdown summary of these files")
    a = p.parse_args(argv)
    if a.summarize:
        print(summarize(a.summarize))
        return 0
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    strategies = [s for s in a.strategies.split(",") if s]
    dtypes, modes = a.dtypes.split(","), a.modes.split(",")
    bad = [s for s in strategies if s not in STRATEGIES] + [d for d in dtypes if d not in DTYPES] + [
        m for m in modes if m not in ("inference", "training")]
    if bad:
        p.error(f"unknown strategies, dtypes or modes {bad}; choose from {STRATEGIES}, {tuple(DTYPES)}, inference/training")
    forms = ST.parse_forms(p, a.forms)
    if a.dry_run:
        print(dry_run_text(dtypes, modes, ints(a.hiddens), ints(a.batches), a.T, strategies))
        return 0
    where = ST.cuda_output(p, a.out, f"strategies-lstm-{'-'.join(strategies)}{a.tag}.json", "lstm_strategy_table",
                           " (--dry-run lists the rows without one)")
    if where is None:
        return 2
    path, env, arch = where

    def save(rows, not_run, done=False):  # after every row, so a run cut short keeps what it measured
        doc = {"env": env, "command": " ".join(sys.argv), "tf32_cudnn": torch.backends.cudnn.allow_tf32, "arch": arch,
               "family": "lstm", "directions": 1, "forms": list(forms), "budget_s": a.budget_s,
               "complete": done and not not_run, "not_run": not_run, "rows": rows}
        path.write_text(json.dumps(doc, indent=1))

    rows, not_run = measure(dtypes, modes, ints(a.hiddens), ints(a.batches), a.T, strategies, a.warmup_ms, a.rep_ms,
                            forms, a.budget_s, save)
    save(rows, not_run, done=True)
    print(f"wrote {path}" + (f" ({len(not_run)} cells not run: budget spent)" if not_run else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
