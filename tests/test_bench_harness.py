"""The benchmark harness: the shipped core (fastgru.bench: FLOP counts, cases, the runner's rule
that a provider failing its correctness check is recorded as failed and never timed, the two timed
forms (eager and CUDA-graphed) and the speedups and headline built from them, the Markdown table)
and the repository's bench/ (suites, result files and their schema, plots, index, compare, the CLI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fastgru.bench import cases as C
from fastgru.bench import flops, runner, table, timing
from fastgru.bench.providers import Prepared, compiled_prepared
from fastgru.bench.environment import CPU_NOTE, environment
from fastgru.bench.gru_providers import gru_setup
from fastgru.bench.sweep import document

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's bench/ package (not installed), as `python -m bench` sees it
    sys.path.insert(0, str(ROOT))

from bench import attention_flops, cli, compare, plots, result_files, results_index  # noqa: E402
from bench import suites as S  # noqa: E402
from bench.decoder_providers import decoder_cost  # noqa: E402

FAST = {"warmup_ms": 1.0, "rep_ms": 5.0}


# ------------------------------------------------------------------------------------ FLOPs


def test_gru_flops_by_hand():
    # 2*T*B*3H*(I+H) + 12*T*B*H with T=2, B=3, I=4, H=5: 1620 + 360
    fwd = flops.gru(2, 3, 4, 5)
    assert fwd.flops == 1980
    assert flops.gru(2, 3, 4, 5, mode="training").flops == 3 * 1980
    # x (6*4) + out (6*5) + h0, h_n (2*15) activations, 15*9 + 30 parameters; fp32
    assert fwd.bytes == 4 * (24 + 30 + 30 + 165)
    # 2 layers, both directions: layer 0 is 2 * 1980; layer 1 reads 2H = 10 inputs: 2 * (2*6*15*15 + 360)
    assert flops.gru(2, 3, 4, 5, num_layers=2, bidirectional=True).flops == 3960 + 6120
    # packed: only the 4 valid positions count
    assert flops.gru(2, 3, 4, 5, tokens=4).flops == 2 * 4 * 15 * 9 + 12 * 4 * 5
    assert flops.gru(1, 3, 4, 5).flops == 2 * 3 * 15 * 9 + 12 * 3 * 5  # one GRUCell step


def test_attention_flops_by_hand():
    # N=2, Tq=3, T=4, D=8: scores 2*2*3*4*8 = 384, softmax 5*24 = 120, weighted sum 384
    assert attention_flops.dot_attention(2, 3, 4, 8).flops == 384 + 120 + 384
    # + projections 576 and 768, tanh-score 4*N*Tq*T*A = 576 with A=6
    assert attention_flops.additive_attention(2, 3, 4, 8, 8, 6).flops == 576 + 768 + 576 + 120 + 384
    # projection 768, bias+tanh 96, score 96, softmax 40, weighted sum 128
    assert attention_flops.attention_pooling(2, 4, 8, 6).flops == 768 + 96 + 96 + 40 + 128
    assert attention_flops.dot_attention(2, 3, 4, 8, mode="training").flops == 3 * 888
    # general: + the query projection 2*N*Tq*Dq*Dk = 768
    assert attention_flops.dot_attention(2, 3, 4, 8, method="general").flops == 888 + 768


def test_decoder_flops_by_hand():
    # B=2, Tin=3, I=4, H=5, K=6, A=7; per step and row: query 2*5*7 = 70, scores 4*3*7 = 84,
    # softmax 5*3 = 15, context 2*3*6 = 36, GRU step on [x, c] 2*15*(4+6+5) + 12*5 = 510
    step = decoder_cost("attention_decoder_step", 2, 3, 4, 5, 6, 7)
    assert step.flops == 2 * 715
    # x, h (2*9), keys and their projection (2*3*13), h_t, c_t (2*11); parameters 15*15 + 30 + 7*13
    assert step.bytes == 4 * (18 + 78 + 22 + 346)
    # teacher forcing over Tout=2: 2 steps per row + the key projection once, 2*2*3*6*7 = 504
    assert decoder_cost("attention_decoder", 2, 3, 4, 5, 6, 7, Tout=2).flops == 2 * 2 * 715 + 504
    assert decoder_cost("attention_decoder", 2, 3, 4, 5, 6, 7, Tout=2, mode="training").flops == 3 * (2860 + 504)


# ------------------------------------------------------------------------------------ cases


def test_case_lists():
    full = S.gru_cases(dtypes=("fp32",))
    single = [c for c in full if not c.shape["packed"] and c.shape["layers"] == 1 and "fastgru" in c.providers]
    plain = [c for c in single if c.shape.get("reset_after", True)]
    assert len(plain) == 2 * len(S.BATCHES) * len(S.HIDDENS) * len(S.SEQ_LENS)
    # reset_after=False cases: no nn.GRU (PyTorch has no such operator), the reference loop instead
    before = [c for c in single if c not in plain]
    assert before and all("nn.GRU" not in c.providers and "eager_ref" in c.providers for c in before)
    assert all(c.id.endswith("-ra0") for c in before)
    compiled = [i for i, c in enumerate(full) if "compiled_ref" in c.providers and "compiled_ref" not in c.skip]
    assert compiled and all(full[i].shape["T"] == S.COMPILE_T for i in compiled)
    # compile-only parts run last, so a time budget drops them first; every other row is marked
    assert compiled == list(range(len(full) - len(compiled), len(full)))
    assert all(full[i].providers == ("compiled_ref",) for i in compiled)
    compiled_ids = {full[i].id for i in compiled}
    assert all(c.id in compiled_ids or "compiled_ref" in c.skip for c in full[: len(full) - len(compiled)])
    assert all("compiled_ref" in c.skip for c in S.gru_cases(quick=True))
    assert S.gru_cases(quick=True, dtypes=("fp32",)) == C.quick_gru_cases(("fp32",))
    assert len(S.select("all", quick=True, device="cpu")) < 30
    assert {c.dtype for c in S.select("gru", device="cpu")} == {"fp32"}
    keys = [(c.id, c.providers) for c in S.select("all", dtypes=("fp32", "bf16"), device="cpu")]
    assert len(keys) == len(set(keys))
    with pytest.raises(ValueError):
        S.select("nope")


def test_decoder_case_list():
    full = S.decoder_cases(dtypes=("fp32",))
    main = [c for c in full if "fastgru" in c.providers]
    grid = len(S.DEC_BATCHES) * len(S.DEC_T_IN) * len(S.DEC_HIDDENS)
    assert len(main) == 2 * grid and {c.op for c in main} == {"attention_decoder", "attention_decoder_step"}
    assert all(c.shape["K"] == S.DEC_KEY_FACTOR * c.shape["H"] and c.shape["A"] == c.shape["I"] == c.shape["H"]
               for c in full)
    train = [c for c in main if c.mode == "training"]
    assert all(c.op == "attention_decoder" and c.shape["Tout"] == S.DEC_T_OUT for c in train)
    assert all("Tout" not in c.shape for c in main if c.mode == "inference")
    # compile-only parts run last: the decoding step at every shape, the training step at the compile points
    only = full[len(main):]
    assert all(c.providers == ("compiled_ref",) for c in only)
    assert {(c.shape["B"], c.shape["H"], c.shape["Tin"]) for c in only if c.mode == "training"} == S.DEC_COMPILE_POINTS
    assert len([c for c in only if c.mode == "inference"]) == grid
    assert all("compiled_ref" in c.skip for c in train if (c.shape["B"], c.shape["H"], c.shape["Tin"])
               not in S.DEC_COMPILE_POINTS)
    quick = S.select("decoder", quick=True, device="cpu")
    assert len(quick) == 2 and all("compiled_ref" in c.skip for c in quick)


# ------------------------------------------------------------------------------------ runner


def _tiny_gru(mode="inference", providers=None):
    case = C.compile_split(C.gru_case(mode, "fp32", C.gru_shape(2, 16, 3)), False, "not here")[0]
    if providers is not None:
        case.providers, case.baselines, case.skip = providers, ("nn.GRU",), {}
    return case


def test_failed_check_is_recorded_and_not_timed():
    calls = {"n": 0}

    def setup_with_wrong_provider(case, device, copies):
        setup = gru_setup(case, device, copies)
        good = setup.providers["nn.GRU"]

        def wrong():
            prep = good()
            result = prep.result

            def timed():
                calls["n"] += 1
            prep.calls = [timed]
            prep.result = lambda: {k: v + 1e-2 if k == "output" else v for k, v in result().items()}
            return prep
        setup.providers["wrong"] = wrong
        setup.checked = ("wrong",)
        return setup

    case = _tiny_gru("training", providers=("wrong", "nn.GRU"))
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", setup_with_wrong_provider, **FAST)}
    bad = rows["wrong"]
    assert bad["status"] == "failed" and "correctness" in bad["error"]
    assert bad["median_ms"] is None and bad["speedup"] == {} and bad["rel_error"] > bad["tolerance"]
    assert calls["n"] == 0, "a provider that failed its check was timed"
    assert rows["nn.GRU"]["status"] == "ok" and "wrong" not in rows["nn.GRU"]["speedup"]
    assert result_files.validate(document(environment("cpu"), {}, list(rows.values()))) == []


def test_real_case_runs_and_checks(monkeypatch):
    case = _tiny_gru("training")
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", **FAST)}
    assert rows["compiled_ref"]["status"] == "skipped"
    fg = rows["fastgru"]
    if fg["status"] != "unavailable":
        assert fg["status"] == "ok", fg["error"]
        assert fg["rel_error"] <= fg["tolerance"] and fg["speedup"]["nn.GRU"] > 0
        assert fg["backend"] in ("interpret", "torch", "triton")
    assert rows["nn.GRU"]["tflops"] > 0 and rows["nn.GRU"]["peak_mem_bytes"] is None  # CPU: no peak


def test_reset_before_case_runs_against_the_reference_loop():
    case = C.compile_split(C.gru_case("training", "fp32", C.gru_shape(2, 16, 3, reset_after=False)), False, "no")[0]
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", **FAST)}
    assert set(rows) == {"fastgru", "eager_ref", "compiled_ref"}
    fg, ref = rows["fastgru"], rows["eager_ref"]
    assert fg["status"] == "ok", fg["error"]
    assert fg["rel_error"] <= fg["tolerance"] and fg["speedup"]["eager_ref"] > 0
    assert ref["status"] == "ok" and ref["rel_error"] <= fg["tolerance"]  # the fp32 loop, fp32-accurate


def test_missing_op_is_unavailable(monkeypatch):
    import fastgru

    monkeypatch.delattr(fastgru, "GRUCell", raising=False)
    case = C.Case("cell", "gru_cell", "inference", "fp32", {"B": 1, "I": 8, "H": 8},
                  ("fastgru", "nn.GRUCell"), ("nn.GRUCell",))
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", S.SETUPS["cell"], **FAST)}
    assert rows["fastgru"]["status"] == "unavailable" and rows["fastgru"]["median_ms"] is None
    assert rows["nn.GRUCell"]["status"] == "ok"


def test_tf32_follows_the_library_rule(monkeypatch):
    """The tolerance's TF32 allowance is fastgru.launchers.tf32.tf32_allowed, under the flag of the torch
    module each suite replaces: cudnn for the GRU layer, matmul for the cell and attention."""
    from fastgru.launchers import tf32

    gru = _tiny_gru(providers=("nn.GRU",))
    assert runner.tf32(gru, "cpu", "cudnn") is tf32.tf32_allowed(torch.empty(0), "cudnn") is False
    seen = []
    monkeypatch.setattr(runner, "tf32_allowed", lambda t, follows: seen.append((t.dtype, follows)) or True)
    cell = C.Case("cell", "gru_cell", "inference", "fp32", {"B": 1, "I": 8, "H": 8}, ("nn.GRUCell",), ())
    attn = C.Case("attention", "dot_attention", "inference", "fp32", {"N": 2, "Tq": 1, "T": 4, "D": 8},
                  ("naive_ref",), ())
    for case in (gru, cell, attn):
        rows = runner.run_case(case, "cpu", S.SETUPS[case.suite], **FAST)
        assert rows[0]["status"] == "ok", rows[0]["error"]
    assert seen == [(torch.float32, "cudnn"), (torch.float32, "matmul"), (torch.float32, "matmul")]
    assert set(runner.SETUPS) == {"gru", "lstm"}  # the shipped runner knows the recurrent suites only


def test_split_case_shares_speedups():
    case = C.gru_case("inference", "fp32", C.gru_shape(2, 16, 3))
    main, only = C.compile_split(case, True, "")
    assert main.id == only.id and only.providers == ("compiled_ref",)
    only.providers = ("nn.GRU",)  # stand-in for the compile-only part: no compile in a unit test
    main.providers = ("fastgru",)
    rows, _ = runner.run([main, only], "cpu", **FAST)
    fg = next(r for r in rows if r["provider"] == "fastgru")
    if fg["status"] == "ok":
        assert set(fg["speedup"]) == {"nn.GRU"}


def test_budget_stops_new_cases():
    rows, info = runner.run([_tiny_gru()], "cpu", budget_s=0.0, **FAST)
    assert rows == [] and info["stopped_by_budget"] and info["cases_not_run"] == [_tiny_gru().id]


# ------------------------------------------------------------------------------------ results


@pytest.fixture(scope="module")
def doc():
    case = _tiny_gru(providers=("fastgru", "nn.GRU"))
    case.skip = {"fastgru": "not run in this test"}
    rows, info = runner.run([case], "cpu", **FAST)
    info.update(suite="gru", quick=True, dtypes=["fp32"])
    return document(environment("cpu"), info, rows)


def test_written_file_validates(doc, tmp_path):
    path = result_files.write(doc, tmp_path)
    assert path.parent.parent == tmp_path and path.name.endswith(".json")
    assert path.name.startswith(doc["env"]["date"][:10])
    loaded = result_files.load(path)
    assert result_files.validate(loaded) == [] and loaded["env"]["note"] == CPU_NOTE
    assert result_files.write(doc, tmp_path) != path  # a second run the same day gets its own name


@pytest.mark.parametrize("breakage", ["no_commit", "bad_status", "ok_without_time", "timed_failure", "schema",
                                      "graphed_without_why", "graphed_ok_without_time", "no_graphed_fields",
                                      "headline_on_failed", "bad_headline_form"])
def test_broken_file_fails(doc, breakage, tmp_path):
    bad = json.loads(json.dumps(doc))
    ok_row = next(r for r in bad["rows"] if r["status"] == "ok")
    if breakage == "no_commit":
        del bad["env"]["commit"]
    elif breakage == "bad_status":
        ok_row["status"] = "great"
    elif breakage == "ok_without_time":
        ok_row["median_ms"] = None
    elif breakage == "timed_failure":
        ok_row.update(status="failed", error="check")
    elif breakage == "graphed_without_why":
        ok_row.update(graphed_status="error", graphed_error=None)
    elif breakage == "graphed_ok_without_time":
        ok_row.update(graphed_status="ok", graphed_error=None, graphed_ms=None)
    elif breakage == "no_graphed_fields":
        del ok_row["graphed_ms"], ok_row["graphed_status"]
    elif breakage == "headline_on_failed":
        failed = next(r for r in bad["rows"] if r["status"] != "ok")
        failed["headline"] = {"nn.GRU": {"ratio": 1.0, "form": "eager", "baseline_form": "eager"}}
    elif breakage == "bad_headline_form":
        ok_row["headline"] = {"x": {"ratio": 1.0, "form": "fast", "baseline_form": "eager"}}
    else:
        bad["schema"] = 99
    assert result_files.validate(bad)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(result_files.SchemaError):
        result_files.load(tmp_path / "bad.json")


def test_markdown_has_rows(doc):
    md = table.markdown(doc)
    assert "| gru | inference | fp32 | B=2 T=3 H=16 | nn.GRU" in md
    assert "**skipped**: not run in this test" in md
    assert "CPU numbers" in md
    assert md.count("\n| gru |") == len(doc["rows"])


def _speedup_doc(doc):
    d = json.loads(json.dumps(doc))
    base = next(r for r in d["rows"] if r["provider"] == "nn.GRU")
    rows = []
    for B in (1, 8, 32):
        for H in (128, 256):
            r = dict(base, provider="fastgru", status="ok", error=None, shape=dict(base["shape"], B=B, H=H, T=64),
                     speedup={"nn.GRU": 1.0 + B / 32})
            rows.append(r)
    d["rows"] = rows
    return d


def test_png_plot(doc, tmp_path):
    if not plots.have_matplotlib():
        pytest.skip("matplotlib is not installed (optional extra 'plot'); PNG plots are skipped")
    made = plots.plots(_speedup_doc(doc), tmp_path / "run")
    assert [p.name for p in made] == ["run-gru-speedup.png"]
    assert made[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_index(doc, tmp_path):
    path = result_files.write(doc, tmp_path)
    path.with_suffix(".md").write_text(table.markdown(doc))
    index = results_index.write_index(tmp_path).read_text()
    assert doc["env"]["device_name"] in index and f"{path.parent.name}/{path.with_suffix('.md').name}" in index
    assert "No runs" in results_index.write_index(tmp_path / "empty").read_text()


def test_compile_reports_newest_first_by_commit_time(tmp_path):
    """Two reports of one day whose hashes sort against their commit times, one whose commit git
    does not know (its date alone: after the same day's known commits), one of an earlier day."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    git = lambda *args, **extra: subprocess.run(["git", *args], cwd=tmp_path, env=dict(env, **extra), check=True,
                                                capture_output=True, text=True).stdout.strip()  # noqa: E731
    git("init", "-q")
    hashes = []
    for k in range(12):  # deterministic: fixed names and dates give fixed hashes
        when = f"2026-01-02T{k:02d}:00:00+00:00"
        git("commit", "-q", "--allow-empty", "-m", f"c{k}", GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
        hashes.append(git("rev-parse", "--short=7", "HEAD"))
    older, newer = next((a, b) for a in hashes for b in hashes[hashes.index(a) + 1:] if b < a)
    names = [f"2026-01-02-{older}", f"2026-01-02-{newer}", "2026-01-02-0000000", f"2026-01-01-{hashes[0]}"]
    for name in names:
        (tmp_path / "results" / "compile" / name).mkdir(parents=True)
    index = results_index.write_index(tmp_path / "results").read_text()
    listed = [line[3:line.index("]")] for line in index.splitlines() if line.startswith("- [")]
    assert listed == ["2026-01-02-0000000", f"2026-01-02-{newer}", f"2026-01-02-{older}", f"2026-01-01-{hashes[0]}"]


# ------------------------------------------------------------------------------------ compare


def test_compare(doc, tmp_path, capsys):
    old = json.loads(json.dumps(doc))
    new = json.loads(json.dumps(doc))
    ok_new = next(r for r in new["rows"] if r["status"] == "ok")
    for k in ("median_ms", "p20_ms", "p80_ms"):
        ok_new[k] = ok_new[k] * 2
    ok_new["p20_ms"] = max(ok_new["p20_ms"], next(r for r in old["rows"] if r["status"] == "ok")["p80_ms"] * 1.01)
    extra = dict(ok_new, provider="extra")
    new["rows"].append(extra)
    by_provider = {e["provider"]: e for e in compare.compare(old, new)}
    assert by_provider["nn.GRU"]["verdict"] == "slower" and by_provider["nn.GRU"]["ratio"] == pytest.approx(2.0)
    assert by_provider["fastgru"]["verdict"] == "same status"
    assert by_provider["extra"]["verdict"] == "new"
    assert compare.compare(old, old)[1]["verdict"] == "same"
    noisy = json.loads(json.dumps(old))
    r = next(r for r in noisy["rows"] if r["status"] == "ok")
    r.update(median_ms=r["median_ms"] * 1.5, p20_ms=r["p20_ms"] * 0.5, p80_ms=r["p80_ms"] * 3)
    assert "noise" in compare.compare(old, noisy)[1]["verdict"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(new))
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| gru | inference | fp32 | B=2 T=3 H=16 | nn.GRU |" in out and "slower" in out


# ------------------------------------------------------------------------------------ CLI


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "select", lambda *a, **k: [_tiny_gru(providers=("nn.GRU",))])
    code = cli.main(["--quick", "--out", str(tmp_path), "--no-progress", "--warmup-ms", "1", "--rep-ms", "5"])
    assert code == 0
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert "README.md" in files and any(f.endswith(".json") for f in files) and any(f.endswith(".md") for f in files)
    assert "CPU numbers" in capsys.readouterr().out


@pytest.mark.parametrize("op", ["attention_pooling", "additive_attention", "dot_attention"])
def test_attention_case_runs_and_checks(op):
    shape = {"N": 2, "Tq": 5, "T": 8, "D": 16, "A": 8}
    if op == "attention_pooling":
        del shape["Tq"]
    if op == "dot_attention":
        del shape["A"]
    providers = ("fastgru", "naive_ref", "sdpa") if op == "dot_attention" else ("fastgru", "naive_ref")
    case = C.Case("attention", op, "training", "fp32", shape, providers, providers[1:])
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", S.SETUPS["attention"], **FAST)}
    for name, r in rows.items():
        assert r["status"] in ("ok", "unavailable"), (name, r["error"])
    if rows["fastgru"]["status"] == "ok":
        assert rows["fastgru"]["rel_error"] <= rows["fastgru"]["tolerance"]
        assert set(rows["fastgru"]["speedup"]) == set(providers[1:])


@pytest.mark.parametrize("op", ["attention_decoder", "attention_decoder_step"])
def test_decoder_case_runs_and_checks(op):
    """The teacher-forced training step and one decoding step: fastgru and the tutorial-style
    decoder (sharing its weights) both within the fp32 limit of the float64 reference (here, without
    CUDA, fastgru's fused decoder kernel runs in the interpreter: tiny shapes)."""
    mode = "training" if op == "attention_decoder" else "inference"
    shape = {"B": 2, "Tout": 2, "Tin": 3, "I": 4, "H": 4, "K": 8, "A": 4}
    if mode == "inference":
        del shape["Tout"]
    case = C.Case("decoder", op, mode, "fp32", shape, ("fastgru", "eager_ref"), ("eager_ref",))
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", S.SETUPS["decoder"], **FAST)}
    assert rows["eager_ref"]["status"] == "ok", rows["eager_ref"]["error"]
    assert rows["eager_ref"]["rel_error"] <= 1e-5
    fg = rows["fastgru"]
    assert fg["status"] == "ok", fg["error"]
    assert fg["rel_error"] <= fg["tolerance"] and set(fg["speedup"]) == {"eager_ref"}


# ------------------------------------------------------------------------------------ CUDA-graphed form


def _timed_row(provider, eager, graphed=None, status=None):
    """A row with the given eager and graphed times (graphed None: ``status`` says why)."""
    r = runner._row(_tiny_gru(), provider, torch.device("cpu"))
    r.update(median_ms=eager, p20_ms=eager, p80_ms=eager)
    if graphed is not None:
        r.update(graphed_ms=graphed, graphed_p20_ms=graphed, graphed_p80_ms=graphed, graphed_status="ok")
    else:
        r.update(graphed_status=status or "error", graphed_error="RuntimeError: capture failed")
    return r


def test_speedups_like_for_like_and_headline_against_the_faster_form():
    """speedup[b] is eager over eager, speedup["b graphed"] graphed over graphed; the headline is
    the baseline's faster form over this row's faster form, naming both forms."""
    fast = _timed_row("fastgru", eager=2.0, graphed=1.5)
    base = _timed_row("nn.GRU", eager=8.0, graphed=3.0)  # graphing helps the baseline most
    runner.speedups([fast, base], ("nn.GRU",))
    assert fast["speedup"] == pytest.approx({"nn.GRU": 4.0, "nn.GRU graphed": 2.0})
    assert fast["headline"]["nn.GRU"] == {"ratio": pytest.approx(2.0), "form": "graphed", "baseline_form": "graphed",
                                          "baseline_graphed": "ok"}
    assert base["speedup"] == {} and base["headline"] == {}  # never its own baseline

    # The baseline eager is its faster form; this row's graph slower than its eager call.
    fast = _timed_row("fastgru", eager=1.0, graphed=1.2)
    base = _timed_row("nn.GRU", eager=3.0, graphed=3.5)
    runner.speedups([fast, base], ("nn.GRU",))
    h = fast["headline"]["nn.GRU"]
    assert (h["ratio"], h["form"], h["baseline_form"]) == (pytest.approx(3.0), "eager", "eager")
    assert fast["speedup"]["nn.GRU graphed"] == pytest.approx(3.5 / 1.2)

    # The baseline could not be captured: no graphed ratio, the headline held to its eager form and saying why.
    fast = _timed_row("fastgru", eager=2.0, graphed=1.0)
    base = _timed_row("nn.GRU", eager=4.0, status="error")
    failed = _timed_row("compiled_ref", eager=1.0, graphed=1.0)
    failed.update(status="failed", median_ms=None)
    runner.speedups([fast, base, failed], ("nn.GRU", "compiled_ref"))
    assert set(fast["speedup"]) == {"nn.GRU"} and set(fast["headline"]) == {"nn.GRU"}
    assert fast["headline"]["nn.GRU"] == {"ratio": pytest.approx(4.0), "form": "graphed", "baseline_form": "eager",
                                          "baseline_graphed": "error"}


def test_graph_blocker_and_capture_refuse_cpu():
    assert timing.graph_blocker("cpu") == timing.NEEDS_CUDA
    assert timing.graph_blocker("cpu", timing.COMPILED) == timing.COMPILED  # the provider's own reason wins
    if not torch.cuda.is_available():
        assert timing.graph_blocker("cuda").startswith(timing.NEEDS_CUDA)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        timing.capture([lambda: None], "cpu")
    packed = pack_padded_sequence(torch.ones(3, 2, 1), torch.tensor([2, 3]), enforce_sorted=False)
    flat = timing.tensors({"a": (torch.zeros(1), [packed]), "b": None, "c": 3})
    assert len(flat) == 1 + 4 and flat[1] is packed.data  # a PackedSequence is a tuple of 4 tensors


def _fixed_prep(value=1.0, no_graph=None):
    return Prepared([lambda: (torch.full((3,), value),)], None, no_graph=no_graph)


def test_graphed_statuses_without_a_gpu(monkeypatch):
    """The runner's graphed form on CPU: why there is none (no CUDA, compiled, --no-graphs), and,
    with capture stood in for, a replay that matches is timed, one that differs is failed and
    never timed, a capture error is recorded by its first line."""
    cpu = torch.device("cpu")
    out = runner.graphed(_fixed_prep(), cpu, 1e-6, **FAST)
    assert (out["graphed_status"], out["graphed_error"], out["graphed_ms"]) == ("unavailable", timing.NEEDS_CUDA, None)
    prep = compiled_prepared(_fixed_prep())
    assert prep.no_graph == timing.COMPILED and prep.compile_s >= 0
    assert runner.graphed(prep, cpu, 1e-6, **FAST)["graphed_status"] == "skipped"
    off = runner.graphed(_fixed_prep(), cpu, 1e-6, **FAST, enabled=False)
    assert off["graphed_status"] == "skipped" and "--no-graphs" in off["graphed_error"]

    monkeypatch.setattr(timing, "graph_blocker", lambda device, reason=None: reason)
    monkeypatch.setattr(timing, "capture", lambda fns, device: list(fns))
    ok = runner.graphed(_fixed_prep(), cpu, 1e-6, **FAST)
    assert ok["graphed_status"] == "ok" and ok["graphed_ms"] > 0 and ok["graphed_rel_error"] == 0
    assert ok["graphed_p20_ms"] <= ok["graphed_ms"] <= ok["graphed_p80_ms"]
    monkeypatch.setattr(timing, "capture", lambda fns, device: [lambda: (torch.full((3,), 1.5),)])
    stale = runner.graphed(_fixed_prep(), cpu, 1e-3, **FAST)
    assert stale["graphed_status"] == "failed" and stale["graphed_ms"] is None and "differs" in stale["graphed_error"]
    assert stale["graphed_rel_error"] == pytest.approx(0.5)
    assert runner.replay_error(torch.tensor([1, 2]), torch.tensor([1, 3])) == float("inf")  # integer results: exact

    def refuse(fns, device):
        raise timing.CaptureError("RuntimeError: operation not permitted when stream is capturing")
    monkeypatch.setattr(timing, "capture", refuse)
    err = runner.graphed(_fixed_prep(), cpu, 1e-3, **FAST)
    assert err["graphed_status"] == "error" and err["graphed_error"].startswith("RuntimeError: operation not")


def test_cpu_rows_say_why_there_is_no_graphed_time(doc):
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    assert ok and all(r["graphed_status"] == "unavailable" and r["graphed_error"] == timing.NEEDS_CUDA
                      and r["graphed_ms"] is None for r in ok)
    assert all(r["graphed_status"] is None for r in doc["rows"] if r["status"] != "ok")
    assert doc["schema"] == 2 and result_files.validate(doc) == []
    md = table.markdown(doc)
    assert "unavailable: CUDA graphs need a CUDA device" in md


def _graphed_doc(doc):
    """The fixture's document with a fastgru row and an nn.GRU row, both forms timed."""
    d = json.loads(json.dumps(doc))
    base = next(r for r in d["rows"] if r["provider"] == "nn.GRU")
    base.update(median_ms=8.0, p20_ms=7.5, p80_ms=8.5, graphed_ms=3.0, graphed_p20_ms=2.9, graphed_p80_ms=3.1,
                graphed_status="ok", graphed_error=None)
    fast = dict(base, provider="fastgru", median_ms=2.0, p20_ms=1.9, p80_ms=2.1, graphed_ms=1.5, graphed_p20_ms=1.4,
                graphed_p80_ms=1.6)
    d["rows"] = [fast, base]
    runner.speedups(d["rows"], ("nn.GRU",))
    return d


def test_markdown_shows_both_forms_and_the_headline(doc):
    d = _graphed_doc(doc)
    assert result_files.validate(d) == []
    md = table.markdown(d)
    row = next(line for line in md.splitlines() if "| fastgru |" in line)
    assert "| 2 | 1.9-2.1 | 1.5 (1.4-1.6) |" in row
    assert "| 4x vs nn.GRU | 2x vs nn.GRU | **2x** graphed vs nn.GRU graphed |" in row
    assert "headline (vs faster baseline form)" in md and "predates" not in md


def test_committed_schema_1_file_still_reads():
    """The 2026-11-23 H100 file (eager only) validates, renders, compares and plots as before."""
    path = next((ROOT / "bench/results/nvidia-h100-80gb-hbm3").glob("2026-11-23-*.json"))
    old = result_files.load(path)
    assert old["schema"] == 1
    md = table.markdown(old)
    assert "predates the CUDA-graph baseline" in md and "0.163x vs nn.GRU" in md
    entries = compare.compare(old, old)
    assert {e["verdict"] for e in entries if e["ratio"] is not None} == {"same"}
    assert all(e["graphed_verdict"] is None for e in entries)
    fast = next(r for r in old["rows"] if r["provider"] == "fastgru" and r["status"] == "ok")
    assert plots.gru_speedup(fast) == fast["speedup"]["nn.GRU"]


def test_compare_graphed_times(doc):
    old = _graphed_doc(doc)
    new = json.loads(json.dumps(old))
    for r in new["rows"]:
        r.update(graphed_ms=r["graphed_ms"] * 2, graphed_p20_ms=r["graphed_p20_ms"] * 2,
                 graphed_p80_ms=r["graphed_p80_ms"] * 2)
    by_provider = {e["provider"]: e for e in compare.compare(old, new)}
    assert by_provider["fastgru"]["verdict"] == "same"
    assert by_provider["fastgru"]["graphed_verdict"] == "slower"
    assert by_provider["fastgru"]["graphed_ratio"] == pytest.approx(2.0)
    assert plots.gru_speedup(old["rows"][0]) == pytest.approx(2.0)  # the headline, not the eager 4x
    assert "| slower |" in compare.markdown(old, new)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_capture_replays_nn_gru_as_eager(mode):
    """A tiny nn.GRU step (inference: the forward; training: forward and backward to the input and
    every weight) captured by timing.capture, two input copies: every replay of each copy gives the
    eager result (inference bitwise; training within the fp32 limit, as PyTorch documents cuDNN's
    RNN backward as not guaranteed deterministic), and the runner times it (graphed_status ok)."""
    from fastgru import testing

    case = C.gru_case(mode, "fp32", C.gru_shape(4, 32, 8))
    prep = gru_setup(case, "cuda", 2).providers["nn.GRU"]()
    want = [[t.clone() for t in timing.tensors(call())] for call in prep.calls]
    replays = timing.capture(prep.calls, "cuda")
    count = 2 if mode == "inference" else 1 + 4  # (output, h_n), or the input's and 4 weights' gradients
    for _ in range(2):
        for replay, expected in zip(replays, want):
            got = timing.tensors(replay())
            torch.cuda.synchronize()
            assert len(got) == len(expected) == count
            for g, w in zip(got, expected):
                if mode == "inference":
                    assert torch.equal(g, w)
                else:
                    assert testing.rel_error(g, w) <= testing.tolerance(torch.float32)
    out = runner.graphed(prep, torch.device("cuda"), testing.tolerance(torch.float32), **FAST)
    assert out["graphed_status"] == "ok", out["graphed_error"]
    assert out["graphed_ms"] > 0
