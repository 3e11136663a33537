"""The LSTM's benchmark code on CPU: its FLOP count, its cases (the quick table's and the suite's,
cuDNN's persistent-LSTM shapes first), a tiny case through the runner (checked against the float64
reference, then timed), cuDNN's algorithm rule for nn.LSTM, and the strategy table's dry run and
summary. Cheap: a second or two."""

import json
import sys
from pathlib import Path

import pytest
import torch

from fastgru import backend
from fastgru.bench import cases as C
from fastgru.bench import flops, runner
from fastgru.bench.lstm_providers import lstm_setup

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import lstm_strategy_table as LT  # noqa: E402
from bench import suites as S  # noqa: E402
from bench.lstm_cudnn import lstm_algorithm  # noqa: E402


def test_lstm_flops_by_hand():
    # T=2, B=3, I=4, H=5: 2*6*20*(4+5) = 2160 matmul + 13*6*5 = 390 elementwise
    assert flops.lstm(2, 3, 4, 5).flops == 2160 + 390
    assert flops.lstm(2, 3, 4, 5, mode="training").flops == 3 * 2550
    # x 24, out 30, (h0, c0) and (h_n, c_n) 2*3*10 = 60; parameters 20*9 + 40; fp32
    assert flops.lstm(2, 3, 4, 5).bytes == 4 * (24 + 30 + 60 + 220)
    # proj_size 2: R = 2, 2*6*20*(4+2) + the projection 2*6*2*5 + 390
    assert flops.lstm(2, 3, 4, 5, proj_size=2).flops == 1440 + 120 + 390
    # two layers, both directions: layer 1 reads D*R = 10 inputs
    assert flops.lstm(2, 3, 4, 5, 2, True).flops == 2 * 2550 + 2 * (2 * 6 * 20 * 15 + 390)


def test_lstm_cases():
    quick = C.quick_lstm_cases(("fp32",))
    assert {c.op for c in quick} == {"lstm"} and all(c.baselines == ("nn.LSTM",) for c in quick)
    assert any(c.shape["proj"] and c.shape["packed"] for c in quick)
    assert not any(c.dtype == "fp16" for c in quick)  # CPU: fp32 only
    gpu = C.quick_lstm_cases(("fp32", "bf16"))
    head = [c for c in gpu if c.dtype == "fp16"]
    assert [(c.shape["B"], c.shape["H"], c.shape["T"]) for c in head] == [C.CUDNN_PERSISTENT]
    full = S.select("lstm", device="cuda")
    # cuDNN's persistent LSTM shapes first, in fp16, the headline shape leading
    first = full[0]
    assert (first.dtype, first.shape["B"], first.shape["H"]) == ("fp16", 16, 768)
    persist = [c for c in full if c.dtype == "fp16"]
    assert len(persist) == 2 * len(S.LSTM_PERSIST_H) * len(S.LSTM_PERSIST_B)
    for c in persist:
        algo, _ = lstm_algorithm(c.mode, "fp16", c.shape["H"], c.shape["B"], input_size=c.shape["I"])
        assert algo == "PERSIST_STATIC", c.id
    assert len({c.id for c in full}) == len(full)
    assert not any(c.dtype == "fp16" for c in S.select("lstm", device="cpu"))
    assert "lstm" in S.SUITES and S.SETUPS["lstm"] is lstm_setup


# The harness is under test here, not the kernels (tests/test_lstm_*.py run those through the
# interpreter): fastgru runs PyTorch's CPU operators, as `python -m fastgru` does on a CPU.
def test_lstm_case_runs_and_checks():
    case = C.lstm_case("training", "fp32", C.lstm_shape(3, 8, 4, I=5, packed=True, proj=4, bidirectional=True))
    with backend.using("torch"):
        rows = runner.run_case(case, "cpu", warmup_ms=0.5, rep_ms=1.0)
    by = {r["provider"]: r for r in rows}
    assert by["fastgru"]["status"] == "ok", by["fastgru"]["error"]
    assert by["fastgru"]["rel_error"] <= by["fastgru"]["tolerance"] and by["fastgru"]["median_ms"] > 0
    assert by["nn.LSTM"]["status"] == "ok" and "nn.LSTM" in by["fastgru"]["speedup"]


def test_lstm_results_hold_c_n_and_every_gradient():
    case = C.lstm_case("training", "fp32", C.lstm_shape(2, 6, 3, I=4, proj=3))
    setup = lstm_setup(case, "cpu")
    ref = setup.reference()
    assert {"output", "h_n", "c_n", "grad_x", "grad_weight_hr_l0", "grad_weight_hh_l0"} <= set(ref)
    assert ref["h_n"].shape == (1, 2, 3) and ref["c_n"].shape == (1, 2, 6)
    got = setup.providers["nn.LSTM"]().result()
    assert runner.check(got, {k: v for k, v in ref.items()}, torch.float32) < 1e-5


def test_a_wrong_lstm_is_failed_and_not_timed(monkeypatch):
    case = C.lstm_case("inference", "fp32", C.lstm_shape(2, 6, 3))
    real = lstm_setup

    def broken(case, device, copies=1):
        setup = real(case, device, copies)
        good = setup.providers["fastgru"]

        def bad():
            prep = good()
            result = prep.result
            prep.result = lambda: {**result(), "c_n": result()["c_n"] + 1}
            return prep
        setup.providers["fastgru"] = bad
        return setup
    with backend.using("torch"):
        rows = runner.run_case(case, "cpu", setup_fn=broken, warmup_ms=0.5, rep_ms=1.0)
    fast = next(r for r in rows if r["provider"] == "fastgru")
    assert fast["status"] == "failed" and "c_n" in fast["error"] and fast["median_ms"] is None


@pytest.mark.parametrize("mode,dtype,H,B,kw,want", [
    ("inference", "fp16", 768, 16, {}, "PERSIST_STATIC"),
    ("training", "fp16", 1024, 128, {}, "PERSIST_STATIC"),
    ("inference", "fp16", 768, 12, {}, "STANDARD"),       # B not a multiple of 8
    ("inference", "fp16", 768, 136, {}, "STANDARD"),      # B over 128
    ("inference", "bf16", 768, 16, {}, "STANDARD"),       # fp16 only
    ("inference", "fp16", 768, 16, {"proj_size": 256}, "STANDARD"),
    ("inference", "fp16", 768, 16, {"packed": True}, "STANDARD"),
    ("inference", "fp16", 768, 16, {"layers": 2}, "STANDARD"),
    ("inference", "fp16", 768, 16, {"input_size": 100}, "STANDARD"),
    ("inference", "fp16", 768, 16, {"sm": 86}, "STANDARD"),
    ("inference", "fp32", 128, 4, {}, "PERSIST_STATIC_SMALL_H"),
    ("training", "fp32", 192, 4, {}, "fwd PERSIST_STATIC_SMALL_H / bwd STANDARD"),
])
def test_cudnn_lstm_algorithm(mode, dtype, H, B, kw, want):
    sm = kw.pop("sm", 90)
    assert lstm_algorithm(mode, dtype, H, B, 1, sm, **kw)[0] == want


def test_lstm_strategy_table_dry_run_and_summary(tmp_path, capsys):
    assert LT.main(["--dry-run", "--dtypes", "fp16,bf16", "--hiddens", "768", "--batches", "16", "--modes",
                    "inference"]) == 0
    text = capsys.readouterr().out
    assert "2 cells x 5 providers" in text and "fp16  inference H768   B16   nn.LSTM: PERSIST_STATIC" in text
    with pytest.raises(SystemExit):
        LT.main(["--dry-run", "--strategies", "warp-drive"])
    base = dict(dtype="fp16", mode="inference", H=768, B=16, T=512, status="ok", cudnn_algo="PERSIST_STATIC")
    nn_row = dict(base, provider="nn.LSTM", ms=2.048, graphed_status="ok", graphed_ms=1.024)
    ours = dict(base, provider="persistent", ms=1.5, graphed_status="ok", graphed_ms=0.512)
    LT.lstm_ratios(nn_row, ours)
    assert ours["vs_nn_lstm"] == pytest.approx(2.0) and ours["baseline"] == "graphed"
    assert ours["vs_nn_lstm_eager"] == pytest.approx(4.0) and not any("gru" in k for k in ours)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"rows": [nn_row, ours]}))
    md = LT.summarize([path])
    assert "| fp16 | inference | 768 | 16 | PERSIST_STATIC | 4.00 | 2.00 | 1.00 graphed (2.00x) |" in md
