"""The strategy table's two baselines and the plan table it emits (bench/strategy_table.py,
bench/plan_emit.py, bench/cudnn_algo.py): the emit rules on small synthetic result files, that
the committed fastgru/launchers/plan_table.json is exactly what its sources give, the cuDNN
algorithm PyTorch picks, and the Markdown summary of old (eager-only) and new files. CPU only
except the last test."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's bench/ package (not installed)
    sys.path.insert(0, str(ROOT))

from bench import plan_emit, strategy_table  # noqa: E402
from bench.cudnn_algo import cudnn_algorithm, pass_algorithm  # noqa: E402

COMMITTED = ROOT / "fastgru" / "launchers" / "plan_table.json"
OLD_FILES = sorted((ROOT / "bench/results/nvidia-h100-80gb-hbm3/strategies").glob("*/*.json"))
ENV = {"device_name": "NVIDIA H100 80GB HBM3"}


def _row(provider, ms, dtype="bf16", mode="inference", H=256, B=1, status="ok", graphed=None, graphed_status=None):
    r = {"dtype": dtype, "mode": mode, "H": H, "B": B, "T": 512, "provider": provider, "status": status}
    if status == "ok":
        r["ms"] = ms
    if graphed is not None:
        r.update(graphed_ms=graphed, graphed_status=graphed_status or "ok")
    elif graphed_status is not None:
        r["graphed_status"] = graphed_status
    return r


def _write(root, name, rows, **doc):
    path = root / name
    path.write_text(json.dumps({"env": ENV, "tf32_cudnn": True, **doc, "rows": rows}))
    return path


def _emit(root, *paths, **kw):
    return plan_emit.emit([str(p) for p in paths], root=root, **kw)


# ------------------------------------------------------------------------------------ buckets
def test_buckets_split_at_geometric_midpoints_and_reach_half_a_step_beyond():
    assert plan_emit.bucket_edges([1024, 256, 512, 512]) == [(256, 182, 362), (512, 363, 724), (1024, 725, 1448)]
    assert plan_emit.bucket_edges([1, 8, 32, 128]) == [(1, 1, 2), (8, 3, 16), (32, 17, 64), (128, 65, 256)]
    assert plan_emit.bucket_edges([64]) == [(64, 64, 64)]
    for values in ([256, 512, 1024], [1, 8, 32, 128], [3, 5, 100, 101], [2, 1000]):
        edges = plan_emit.bucket_edges(values)
        for (_, _, hi), (_, lo, _) in zip(edges, edges[1:]):
            assert lo == hi + 1  # contiguous, never overlapping
        v0, v1, vm, vn = values[0], values[1], values[-2], values[-1]
        assert edges[0][1] >= v0 / math.sqrt(v1 / v0) - 1e-9 and edges[0][1] <= max(1, v0)  # no further than half a step
        assert edges[-1][2] <= vn * math.sqrt(vn / vm) + 1e-9 and edges[-1][2] >= vn
        for v, lo, hi in edges:
            assert lo <= v <= hi and lo >= 1
    with pytest.raises(ValueError, match="values"):
        plan_emit.bucket_edges([0, 4])


# ------------------------------------------------------------------------------------ emit rules
def test_margin_decides_between_the_best_candidate_and_cudnn(tmp_path):
    rows = [_row("nn.GRU", 10.0, B=1), _row("rows", 10.0 / 1.04, B=1), _row("stepwise", 20.0, B=1),
            _row("nn.GRU", 10.0, B=8), _row("rows", 10.0 / 1.06, B=8), _row("stepwise", 10.0 / 1.2, B=8)]
    doc = _emit(tmp_path, _write(tmp_path, "a.json", rows))
    by_b = {e["measured"]["B"]: e for e in doc["entries"]}
    assert by_b[1]["strategy"] == "cudnn" and by_b[1]["measured"]["ratio"]["rows"] == pytest.approx(1.04, abs=1e-3)
    assert by_b[8]["strategy"] == "stepwise"  # the highest ratio, not the first over the margin
    assert doc["margin"] == plan_emit.MARGIN == 1.05
    assert _emit(tmp_path, tmp_path / "a.json", margin=1.3)["entries"][1]["strategy"] == "cudnn"


def test_persistent_is_a_candidate_only_in_its_default_dtypes(tmp_path):
    rows = []
    for dtype in ("bf16", "fp32"):
        rows += [_row("nn.GRU", 10.0, dtype=dtype), _row("persistent", 2.0, dtype=dtype), _row("rows", 9.0, dtype=dtype)]
    doc = _emit(tmp_path, _write(tmp_path, "a.json", rows))
    by_dtype = {e["dtype"]: e for e in doc["entries"]}
    assert by_dtype["bf16"]["strategy"] == "persistent" and by_dtype["bf16"]["tf32"] is None
    assert by_dtype["fp32"]["strategy"] == "rows" and by_dtype["fp32"]["tf32"] is True
    assert "persistent" not in by_dtype["fp32"]["measured"]["ratio"]
    assert plan_emit.candidates("fp32") == ("rows", "stepwise")
    assert plan_emit.candidates("fp16") == ("rows", "stepwise", "persistent")


def test_no_entry_without_an_ok_nn_gru_row_and_failed_rows_ignored(tmp_path):
    rows = [_row("nn.GRU", None, B=1, status="failed"), _row("persistent", 1.0, B=1),
            _row("nn.GRU", 10.0, B=8), _row("persistent", 1.0, B=8, status="skipped"), _row("rows", 12.0, B=8)]
    doc = _emit(tmp_path, _write(tmp_path, "a.json", rows))
    assert [(e["measured"]["B"], e["strategy"]) for e in doc["entries"]] == [(8, "cudnn")]
    assert set(doc["entries"][0]["measured"]["ratio"]) == {"rows"}


def test_ratios_are_never_formed_across_files_and_combine_by_the_worst(tmp_path):
    # a.json: nn.GRU slow (noisy host launches), rows 2x; b.json: nn.GRU fast, rows 0.8x.
    a = _write(tmp_path, "a.json", [_row("nn.GRU", 10.0), _row("rows", 5.0)])
    b = _write(tmp_path, "b.json", [_row("nn.GRU", 4.0), _row("rows", 5.0)])
    (e,) = _emit(tmp_path, b, a)["entries"]
    assert e["strategy"] == "cudnn" and e["measured"]["ratio"] == {"rows": 0.8}
    assert e["measured"]["sources"] == ["a.json", "b.json"]
    # c.json has the strategy but no nn.GRU: its rows never meet a.json's nn.GRU
    c = _write(tmp_path, "c.json", [_row("persistent", 0.5)])
    (e,) = _emit(tmp_path, a, c)["entries"]
    assert "persistent" not in e["measured"]["ratio"] and e["strategy"] == "rows"
    assert _emit(tmp_path, c)["entries"] == []


def test_best_form_takes_the_faster_of_eager_and_graphed(tmp_path):
    rows = [_row("nn.GRU", 10.0, graphed=4.0), _row("rows", 5.0, graphed=3.0),
            _row("stepwise", 2.0, graphed=1.0, graphed_status="error")]  # a failed capture is no form
    (e,) = _emit(tmp_path, _write(tmp_path, "a.json", rows))["entries"]
    assert e["measured"]["baseline"] == "graphed"
    assert e["measured"]["ratio"] == {"rows": pytest.approx(4.0 / 3.0, abs=1e-3), "stepwise": 2.0}
    assert e["strategy"] == "stepwise"
    assert plan_emit.best_form(_row("rows", 5.0, graphed=3.0)) == (3.0, "graphed")
    assert plan_emit.best_form(_row("rows", 5.0, status="failed")) is None


def test_entries_do_not_overlap_and_keys_are_complete(tmp_path):
    rows = [_row(p, ms, dtype=d, mode=m, H=H, B=B) for d in ("bf16", "fp32") for m in ("inference", "training")
            for H in (128, 512) for B in (1, 16) for p, ms in (("nn.GRU", 10.0), ("rows", 4.0))]
    doc = _emit(tmp_path, _write(tmp_path, "a.json", rows, arch="sm_80"))
    assert len(doc["entries"]) == 16
    for e in doc["entries"]:
        assert e["arch"] == "sm_80" and e["reset_after"] is True and e["directions"] == 1
    _assert_no_overlap(doc["entries"])
    assert doc["entries"] == sorted(doc["entries"], key=lambda e: (e["dtype"], e["mode"], e["h"][0], e["b"][0]))


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="paths"):
        plan_emit.emit([], root=tmp_path)
    outside = _write(tmp_path, "a.json", [_row("nn.GRU", 1.0)])
    with pytest.raises(ValueError, match="inside the repository"):
        plan_emit.emit([str(outside)], root=tmp_path / "sub")
    (tmp_path / "b.json").write_text(json.dumps({"env": {"device_name": "Mystery GPU"}, "rows": [_row("nn.GRU", 1.0)]}))
    with pytest.raises(ValueError, match="b.json.*not known"):
        _emit(tmp_path, tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"env": ENV, "rows": [_row("nn.GRU", 1.0, dtype="fp32")]}))
    with pytest.raises(ValueError, match="tf32_cudnn"):
        _emit(tmp_path, tmp_path / "c.json")


def _assert_no_overlap(entries):
    groups = {}
    for e in entries:
        groups.setdefault((e["arch"], e["dtype"], e["tf32"], e["mode"], e["reset_after"], e["directions"]), []).append(e)
    for es in groups.values():
        for i, a in enumerate(es):
            for b in es[i + 1:]:
                h = a["h"][0] <= b["h"][1] and b["h"][0] <= a["h"][1]
                bb = a["b"][0] <= b["b"][1] and b["b"][0] <= a["b"][1]
                assert not (h and bb), (a, b)


# ------------------------------------------------------------------------------------ the committed table
def test_committed_plan_table_is_what_its_sources_give():
    text = COMMITTED.read_text()
    doc = json.loads(text)
    regenerated = plan_emit.emit(doc["sources"])
    assert regenerated == doc, "fastgru/launchers/plan_table.json differs: regenerate it with its 'command'"
    assert plan_emit.dumps(regenerated) == text
    assert doc["command"] == "python bench/strategy_table.py --emit-plan " + " ".join(doc["sources"])


def test_committed_plan_table_seed_outcome():
    """The 2026-11-23 H100 files: fp32 goes to cuDNN everywhere, bf16 to persistent except
    H = 1024 at B >= 32 (persistent cannot hold it and nothing else beats cuDNN)."""
    doc = json.loads(COMMITTED.read_text())
    _assert_no_overlap(doc["entries"])
    assert len(doc["entries"]) == 48
    for e in doc["entries"]:
        m = e["measured"]
        if e["dtype"] == "fp32":
            expected = "cudnn"
        else:
            expected = "cudnn" if (m["H"], m["B"] >= 32) == (1024, True) else "persistent"
        assert e["strategy"] == expected, e
        assert e["arch"] == "sm_90" and m["baseline"] == "eager"


def test_emit_plan_command_line_writes_the_table(tmp_path, capsys):
    doc = json.loads(COMMITTED.read_text())
    out = tmp_path / "plan.json"
    assert strategy_table.main(["--emit-plan", *[str(ROOT / s) for s in doc["sources"]], "--plan-out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["command"].endswith(f"--plan-out {out}")
    assert {k: v for k, v in written.items() if k != "command"} == {k: v for k, v in doc.items() if k != "command"}
    assert "48 entries" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ cuDNN's algorithm
@pytest.mark.parametrize("mode, dtype, H, B, T, D, sm, expected", [
    ("inference", "bf16", 128, 1, 512, 1, 90, "PERSIST_STATIC_SMALL_H"),
    ("inference", "fp32", 192, 64, 512, 1, (9, 0), "PERSIST_STATIC_SMALL_H"),
    ("inference", "bf16", 256, 1, 512, 1, "sm_90", "STANDARD"),
    ("inference", "fp16", 1024, 16, 512, 1, 90, "STANDARD"),  # never PERSIST_STATIC for a GRU on sm >= 8
    ("training", "bf16", 128, 8, 512, 1, 90, "PERSIST_STATIC_SMALL_H"),
    ("training", "bf16", 160, 8, 512, 1, 90, "fwd PERSIST_STATIC_SMALL_H / bwd STANDARD"),
    ("inference", "fp64", 64, 8, 512, 1, 90, "STANDARD"),
    ("inference", "fp16", 256, 16, 512, 1, 70, "PERSIST_STATIC"),  # Volta: the GRU is not excluded
    ("training", "fp16", 256, 8, 512, 1, 70, "PERSIST_STATIC"),
    ("inference", "bf16", 256, 16, 512, 1, 70, "STANDARD"),  # fp16 only
    ("inference", "fp16", 256, 80, 512, 1, 70, "STANDARD"),  # weeded-out batch
    ("inference", "fp16", 256, 128, 30, 1, 70, "STANDARD"),  # too short for B > 96
    ("inference", "fp16", 320, 16, 512, 1, 70, "STANDARD"),  # H not a multiple of 128
    ("inference", "fp16", 256, 16, 512, 2, 70, "STANDARD"),  # bidirectional
    ("inference", "fp16", 256, 16, 512, 1, 75, "STANDARD"),  # Turing
    ("inference", "bf16", 64, 1, 512, 1, 52, "STANDARD"),  # before sm 6.0
])
def test_cudnn_algorithm(mode, dtype, H, B, T, D, sm, expected):
    algo, reason = cudnn_algorithm(mode, dtype, H, B, T, D, sm)
    assert algo == expected
    assert reason


def test_cudnn_algorithm_reasons_and_errors():
    assert "flakier" in cudnn_algorithm("inference", "fp16", 512, 16, 512, 1, 90)[1]
    assert "> 192" in cudnn_algorithm("inference", "bf16", 256, 1, 512, 1, 90)[1]
    assert pass_algorithm(True, "bf16", 64, 1, 512, packed=True)[0] == "STANDARD"
    assert pass_algorithm(True, "fp16", 256, 16, 512, sm=70, input_size=100)[0] == "STANDARD"
    for kwargs, name in (({"mode": "train"}, "mode"), ({"dtype": "f32"}, "dtype"), ({"sm": "ampere"}, "sm"),
                         ({"H": 0}, "H"), ({"D": 3}, "D")):
        args = {"mode": "inference", "dtype": "bf16", "H": 64, "B": 1, "T": 8, "D": 1, "sm": 90, **kwargs}
        with pytest.raises(ValueError, match=name):
            cudnn_algorithm(**args)


# ------------------------------------------------------------------------------------ summary and ratios
def test_summarize_reads_the_old_eager_only_files():
    text = strategy_table.summarize([str(p) for p in OLD_FILES])
    lines = text.splitlines()
    assert lines[0].startswith("| dtype | mode | H | B | nn.GRU algorithm | nn.GRU eager ms | nn.GRU graphed ms | persistent")
    row = next(l for l in lines if l.startswith("| bf16 | inference | 256 | 1 |"))
    assert "| STANDARD |" in row and "| eager only |" in row
    assert row.endswith("persistent 3.58x vs eager (eager only) |")  # the worst of run 2's two persistent files
    assert sum(l.startswith("| ") for l in lines) == 1 + 48  # the header and one row per shape


def test_summarize_shows_both_ratios_and_the_faster_baseline(tmp_path):
    rows = [_row("nn.GRU", 10.0, graphed=4.0, B=1), _row("persistent", 2.0, graphed=1.0, B=1),
            _row("nn.GRU", 10.0, graphed_status="error", B=8), _row("persistent", 2.0, graphed_status="error", B=8)]
    text = strategy_table.summarize([str(_write(tmp_path, "a.json", rows, arch="sm_90"))])
    b1 = next(l for l in text.splitlines() if l.startswith("| bf16 | inference | 256 | 1 |"))
    assert "| 4.00 |" in b1 and "1.00 ms graphed: 10.00x eager / 4.00x graphed" in b1
    assert b1.endswith("persistent 4.00x vs graphed |")
    b8 = next(l for l in text.splitlines() if l.startswith("| bf16 | inference | 256 | 8 |"))
    assert "| capture failed |" in b8 and b8.endswith("persistent 5.00x vs eager (eager only) |")


def test_add_ratios():
    base = _row("nn.GRU", 10.0, graphed=4.0)
    row = _row("persistent", 5.0, graphed=2.0)
    strategy_table.add_ratios(base, row)
    assert row["speedup_vs_nn_gru"] == 2.0  # eager over eager, as the older files
    assert (row["vs_nn_gru_eager"], row["vs_nn_gru_graphed"], row["vs_nn_gru"], row["baseline"]) == (5.0, 2.0, 2.0, "graphed")
    eager_only = _row("nn.GRU", 10.0, graphed_status="error")
    row = _row("rows", 5.0)
    strategy_table.add_ratios(eager_only, row)
    assert "vs_nn_gru_graphed" not in row and (row["vs_nn_gru"], row["baseline"]) == (2.0, "eager")
    row = _row("rows", 5.0)
    strategy_table.add_ratios(_row("nn.GRU", None, status="failed"), row)
    assert "vs_nn_gru" not in row


@pytest.mark.gpu
def test_measure_times_both_forms_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rows = strategy_table.measure(["bf16"], ["inference", "training"], [64], [2], 8, ["rows"], 1.0, 5.0)
    assert [r["provider"] for r in rows] == ["nn.GRU", "rows"] * 2
    for r in rows:
        assert r["status"] == "ok" and r["graphed_status"] in ("ok", "failed", "error"), r
        assert r["cudnn_algo"] == "PERSIST_STATIC_SMALL_H"
    assert rows[0]["graphed_status"] == "ok", rows[0].get("graphed_error")  # nn.GRU's forward captures
    assert "vs_nn_gru" in rows[1]


# ------------------------------------------------------------------------------------ variant files
def _vrow(ms, variant=None, block_h=None, num_warps=None, dtype="bf16", H=256, B=1, reset_after=True):
    r = _row("persistent", None, dtype=dtype, H=H, B=B, graphed=ms)
    r.update(variant=variant, block_h=block_h, num_warps=num_warps, reset_after=reset_after)
    return r


def test_candidate_names_and_identities():
    assert plan_emit.candidate_name(_row("rows", 1.0)) == "rows"
    assert plan_emit.candidate_name(_row("persistent", 1.0)) == "persistent"  # older files
    assert plan_emit.candidate_name(_vrow(1.0, "base")) == "persistent"
    assert plan_emit.candidate_name(_vrow(1.0, "base", 16, 4)) == "persistent:base/h16/w4"
    assert plan_emit.candidate_name(_vrow(1.0, "prefetch+split", None, 8)) == "persistent:prefetch+split/w8"
    assert plan_emit.identity("persistent:prefetch+split/w8") == ("persistent", "prefetch+split", None, 8)
    assert plan_emit.identity("persistent:flags/h32") == ("persistent", "flags", 32, None)
    assert plan_emit.identity("stepwise") == ("stepwise", "base", None, None)


def test_variant_winner_and_its_fields_land_in_the_entry(tmp_path):
    rows = [_row("nn.GRU", 10.0, graphed=8.0), _vrow(4.0, "base"), _vrow(2.0, "prefetch+split+flags", 16, 4),
            _vrow(2.5, "split"),
            _row("nn.GRU", 10.0, graphed=8.0, B=8), _vrow(4.0, "base", B=8), _vrow(5.0, "flags", 32, B=8)]
    doc = _emit(tmp_path, _write(tmp_path, "v.json", rows, arch="sm_90"))
    by_b = {e["measured"]["B"]: e for e in doc["entries"]}
    e = by_b[1]
    assert (e["strategy"], e["variant"], e["block_h"], e["num_warps"]) == ("persistent", "prefetch+split+flags", 16, 4)
    assert e["measured"]["ratio"] == {"persistent": 2.0, "persistent:prefetch+split+flags/h16/w4": 4.0,
                                      "persistent:split": 3.2}
    # base at the dispatcher's block wins at B = 8: a plain persistent entry, no optional fields
    assert by_b[8]["strategy"] == "persistent" and not {"variant", "block_h", "num_warps"} & set(by_b[8])
    # what the dispatcher reads back
    from fastgru.launchers.plan import PersistentChoice
    choice = PersistentChoice.of_entry(e)
    assert (choice.variant.name, choice.block_h, choice.num_warps) == ("prefetch+split+flags", 16, 4)
    assert "variant=prefetch+split+flags block_h=16 num_warps=4" in plan_emit.summary(doc)
    split_only = _emit(tmp_path, _write(tmp_path, "w.json", [_row("nn.GRU", 10.0), _vrow(5.0, "split", None, 8)]))
    (e,) = split_only["entries"]
    assert (e["variant"], e["num_warps"]) == ("split", 8) and "block_h" not in e


def test_variant_identities_combine_across_files_by_the_worst(tmp_path):
    # a.json: the split variant 4x, base 2x; b.json: split 1.5x, base 2x -> base wins (worst of split: 1.5)
    a = _write(tmp_path, "a.json", [_row("nn.GRU", 8.0), _vrow(2.0, "split", 16, 4), _vrow(4.0, "base")])
    b = _write(tmp_path, "b.json", [_row("nn.GRU", 6.0), _vrow(4.0, "split", 16, 4), _vrow(3.0, "base")])
    (e,) = _emit(tmp_path, a, b)["entries"]
    assert e["measured"]["ratio"] == {"persistent": 2.0, "persistent:split/h16/w4": 1.5}
    assert e["strategy"] == "persistent" and "variant" not in e
    # the same identity twice in one file: its worst there too
    c = _write(tmp_path, "c.json", [_row("nn.GRU", 8.0), _vrow(2.0, "split", 16, 4), _vrow(8.0, "split", 16, 4)])
    (e,) = _emit(tmp_path, c)["entries"]
    assert e["measured"]["ratio"] == {"persistent:split/h16/w4": 1.0} and e["strategy"] == "cudnn"


def test_plain_tf32_is_never_eligible(tmp_path, monkeypatch):
    """fp32 persistent is not a default candidate yet; once it is, plain TF32 still is not (cuDNN may
    keep the GRU in fp32 where TF32 is allowed), while 3xTF32 is."""
    monkeypatch.setattr(plan_emit, "candidates", lambda dtype: ("rows", "stepwise", "persistent"))
    assert not plan_emit.eligible("persistent:tf32/h16/w4", "fp32")
    assert not plan_emit.eligible("persistent:flags+tf32", "fp32")
    assert plan_emit.eligible("persistent:tf32x3/h16/w4", "fp32")
    rows = [_row("nn.GRU", 10.0, dtype="fp32"), _vrow(1.0, "tf32", 16, 4, dtype="fp32"),
            _vrow(4.0, "tf32x3", 16, 4, dtype="fp32"), _row("rows", 9.0, dtype="fp32")]
    (e,) = _emit(tmp_path, _write(tmp_path, "a.json", rows))["entries"]
    assert (e["strategy"], e["variant"], e["block_h"]) == ("persistent", "tf32x3", 16)
    assert "persistent:tf32/h16/w4" not in e["measured"]["ratio"]
    monkeypatch.undo()
    (e,) = _emit(tmp_path, tmp_path / "a.json")["entries"]
    assert e["strategy"] == "rows"  # fp32 persistent is no default candidate today


def test_reset_before_rows_of_a_variant_file_have_no_baseline(tmp_path):
    rows = [_row("nn.GRU", 10.0), _vrow(2.0, "base"), _vrow(1.0, "recompute", reset_after=False),
            _vrow(1.5, "base", reset_after=False)]
    doc = _emit(tmp_path, _write(tmp_path, "a.json", rows))
    assert [(e["reset_after"], e["strategy"]) for e in doc["entries"]] == [(True, "persistent")]
    assert doc["entries"][0]["measured"]["ratio"] == {"persistent": 5.0}
