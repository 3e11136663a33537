"""The persistent-variant benchmark without a GPU: bench/variants.py's matrix and its duration
estimate, ``strategy_table.py --variants SET --dry-run`` (lists every row, counts the compiles,
exits non-zero over --budget-s), the run's budget stop and ratios (the GPU parts stubbed), and
bench/barrier_probe_kernel.py's barrier forms under the interpreter, programs as threads."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's bench/ package (not installed)
    sys.path.insert(0, str(ROOT))

from bench import barrier_floor, precompile, strategy_table  # noqa: E402
from bench import variants as V  # noqa: E402
from fastgru.launchers.plan import PERSISTENT_BLOCK_H, PersistentVariant  # noqa: E402


# ------------------------------------------------------------------------------------ the matrix
def test_goal_matrix_holds_every_variant_and_shape_asked_for():
    items = V.matrix("goal")
    persistent = [i for i in items if i.provider == V.PERSISTENT]
    for i in persistent:  # every variant parses, applies to its call, and names a real block / warps
        PersistentVariant.parse(i.variant).check(strategy_table.DTYPES[i.dtype], i.reset_after)
        assert i.block_h in (None, *PERSISTENT_BLOCK_H) and i.num_warps in (None, 4, 8)
    goal_row = {(i.variant, i.H) for i in persistent if (i.dtype, i.mode, i.B, i.block_h) == ("bf16", "inference", 1, None)}
    assert {(v, H) for v in V.VARIANTS for H in (256, 512, 1024)} <= goal_row
    sweep = {(i.H, i.block_h, i.num_warps) for i in persistent if i.block_h is not None and i.dtype == "bf16"}
    assert {(256, bh, w) for bh in (16, 32, 64) for w in (4, 8)} <= sweep
    assert (1024, 64, 4) not in sweep  # its weight tiles do not fit one block's shared memory
    fp32 = {(i.variant, i.block_h) for i in persistent if i.dtype == "fp32"}
    assert {("tf32", 16), ("tf32x3", 16), ("tf32", 32), ("tf32x3", 32)} <= fp32
    before = {i.variant for i in persistent if not i.reset_after}
    assert before == {"base", "recompute"}
    assert {i.mode for i in persistent} == {"inference", "training"} and {i.B for i in items} == {1, 8, 64}
    # every variant at B 1 / 8 / 64 in bf16 inference and training (H 1024 at B 64 left out)
    for mode in ("inference", "training"):
        got = {(i.variant, i.H, i.B) for i in persistent if (i.dtype, i.mode, i.block_h) == ("bf16", mode, None)}
        assert {(v, H, B) for v in V.VARIANTS for H in (256, 512, 1024) for B in (1, 8, 64) if (H, B) != (1024, 64)} <= got
    assert {(i.H, i.B) for i in persistent if i.dtype == "fp32"} == {(256, 1), (512, 1), (256, 8), (512, 8)}
    # every reset_after=True cell opens with nn.GRU (both forms); reset_after=False cells have none
    for cell in V.cells(items):
        assert (cell[0].provider == V.BASELINE) == cell[0].reset_after
        assert sum(i.provider == V.BASELINE for i in cell) == int(cell[0].reset_after)
    assert next(i for i in items if i.provider == V.BASELINE).forms == ("eager", "graphed")
    assert all(i.forms == ("graphed",) for i in persistent)
    assert len(set(items)) == len(items)
    with pytest.raises(ValueError, match="variants"):
        V.matrix("everything")


def test_compile_keys_count_shared_kernels_once():
    base = V._p("bf16", "training", 256, 1, "base")
    assert V.planned_block(base) == (64, 4) and V.planned_block(V._p("bf16", "inference", 1024, 1, "base")) == (32, 4)
    # the backward takes only flags: prefetch shares base's backward, flags does not
    bwd = lambda v: V.kernel_keys(V._p("bf16", "training", 256, 1, v))[1]  # noqa: E731
    assert bwd("prefetch") == bwd("base") != bwd("flags")
    # B 1, 8, 64 are three compiles; B 64 and 128 one specialization but different blocks
    fwd = lambda B: V.kernel_keys(V._p("bf16", "inference", 256, B, "base"))[0]  # noqa: E731
    assert len({fwd(1), fwd(8), fwd(64)}) == 3
    # fp32: base runs 3xTF32 (the launcher's default), so forced tf32x3 at the same block is the same kernel
    same = [V._p("fp32", "inference", 256, 1, v, 16, 4) for v in ("base", "tf32x3", "tf32")]
    keys = [V.kernel_keys(i)[0] for i in same]
    assert keys[0] == keys[1] != keys[2]
    assert V.kernel_keys(same[2], tf32=False)[0] == keys[0][:-1] + ("ieee",)
    est = V.estimate([V.Item("fp32", "inference", 256, 1, True, V.BASELINE), *same], 5, 25, 10, 30)
    assert est["compiles"] == 2 and est["rows"] == 4 and est["cells"] == 1


def test_estimate_fits_the_gpu_scripts_budget_only_with_the_warm_up_pool():
    items = V.matrix("goal")
    est = V.estimate(items, 5, 25, 10, 50, workers=V.WORKERS_H100)
    b = est["breakdown"]
    assert est["seconds"] <= 200  # bench/gpu_check.sh's --budget-s for the variant step (215 s less 15)
    assert est["seconds"] == pytest.approx(V.STARTUP_S + b["warmup_s"] + sum(est["per_row"]), abs=0.1)
    assert b["compile_s"] == 0 and b["cache_load_s"] == pytest.approx(V.CACHE_LOAD_S * est["compiles"], abs=0.1)
    # the pool: every compile, slowed, spread over the workers after their start-up
    jobs = V.warm_jobs(items)
    assert b["warmup_s"] == pytest.approx(V.pool_seconds([V.job_cost(j) for j in jobs], V.WORKERS_H100), abs=0.1)
    assert b["warmup_s"] >= V.WORKER_STARTUP_S + V.PARALLEL_SLOWDOWN * b["warmup_compile_s"] / V.WORKERS_H100
    # serially the same matrix is far over the budget: the compiles dominate
    serial = V.estimate(items, 5, 25, 10, 50)
    assert serial["seconds"] > strategy_table.VARIANT_BUDGET_S and serial["jobs"] == 0
    assert serial["breakdown"]["compile_s"] == pytest.approx(b["warmup_compile_s"], abs=0.1)
    assert serial["breakdown"]["compile_s"] > serial["breakdown"]["timing_s"]
    assert V.estimate(V.matrix("smoke"), 5, 25, 10, 50, workers=8)["seconds"] < 60
    # each variant row's repetitions count (175 ms more each), nn.GRU's not
    n_variant = sum(i.provider == V.PERSISTENT for i in items)
    longer = V.estimate(items, 5, 200, 10, 50, workers=V.WORKERS_H100)
    assert longer["seconds"] == pytest.approx(est["seconds"] + n_variant * 0.175, abs=0.2)
    # keys the pool did not warm are compiled by the timing process, at their full cost
    half = {k for j in jobs[: len(jobs) // 2] for k in j.keys}
    part = V.estimate(items, 5, 25, 10, 50, warm=half)
    assert part["breakdown"]["compile_s"] == pytest.approx(
        sum(V.compile_cost(k) for j in jobs[len(jobs) // 2:] for k in j.keys), abs=0.1)


def test_warm_jobs_cover_every_compile_key_once_in_order():
    items = V.matrix("goal")
    jobs = V.warm_jobs(items)
    keys = [k for j in jobs for k in j.keys]
    every = {k for i in items for k in V.kernel_keys(i)}
    assert len(keys) == len(set(keys)) == len(every) and set(keys) == every
    assert [j.index for j in jobs] == sorted({j.index for j in jobs})  # the items' order, one job an item
    assert all(items[j.index] is j.item and set(j.keys) <= set(V.kernel_keys(j.item)) for j in jobs)
    assert all(j.item.provider == V.PERSISTENT for j in jobs)
    # a training row whose backward an earlier row compiled brings only its forward
    pre = [V._p("bf16", "training", 256, 1, v) for v in ("base", "prefetch")]
    assert [len(j.keys) for j in V.warm_jobs(pre)] == [2, 1]


def test_pool_seconds_is_list_scheduling_after_start_up():
    s = V.WORKER_STARTUP_S
    assert V.pool_seconds([4, 1, 1, 1], 2) == pytest.approx(s + 4)
    assert V.pool_seconds([1, 1, 1, 4], 2) == pytest.approx(s + 1 + 4)  # in order: the long one last
    assert V.pool_seconds([4, 1, 1, 1], 1) == pytest.approx(s + 7)
    assert V.pool_seconds([], 8) == 0.0


def test_dry_run_lists_every_row_and_fails_over_budget(capsys):
    assert strategy_table.main(["--variants", "goal", "--dry-run"]) == 0
    out = capsys.readouterr().out
    items = V.matrix("goal")
    est = V.estimate(items, 5.0, 25.0, 10.0, 50.0, torch.backends.cudnn.allow_tf32, V.WORKERS_H100)
    assert f"{len(items)} rows in {est['cells']} cells, {est['compiles']} distinct kernel compiles" in out
    assert f"expected {est['seconds']:.0f} s on an H100" in out  # 8 workers: the GPU machine's, not this one's
    assert f"warm-up pool: {est['jobs']} jobs on 8 workers" in out
    listed = [line for line in out.splitlines() if line[:4].strip().isdigit() and line[4:6] == "  "]
    assert len(listed) == len(items)
    assert "persistent prefetch+split+flags" in out and "reset_before" in out and "block 16 warps 8" in out
    assert strategy_table.main(["--variants", "goal", "--dry-run", "--budget-s", "30"]) == 1
    assert "over the budget of 30 s" in capsys.readouterr().err
    assert strategy_table.main(["--variants", "goal", "--dry-run", "--precompile-workers", "0"]) == 1  # serial: over
    assert "warm-up pool:" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        strategy_table.main(["--variants", "goal", "--dry-run", "--precompile-workers", "-1"])
    with pytest.raises(SystemExit):
        strategy_table.main(["--variants", "nope", "--dry-run"])
    with pytest.raises(SystemExit):
        strategy_table.main(["--dry-run"])  # only with --variants


# ------------------------------------------------------------------------------------ the run, GPU stubbed
@pytest.fixture
def stubbed(monkeypatch):
    """measure_variants with the GPU parts replaced: every row 'ok', graphed time by variant."""
    ms = {"base": 4.0, "prefetch": 2.0, "flags": 5.0, "recompute": 3.0}
    monkeypatch.setattr(strategy_table, "_reference_cell", lambda *a: (None, None, None, 1.0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))

    def time_row(row, make, x, gold, limit, warmup_ms, rep_ms, forms, *a):
        row.update(status="ok", graphed_status="ok", graphed_ms=ms.get(row["variant"], 8.0))
        if "eager" in forms:
            row["ms"] = 10.0
    monkeypatch.setattr(strategy_table, "_time_row", time_row)


def test_variant_run_records_identity_and_ratios(stubbed):
    items = [V.Item("bf16", "inference", 256, 1, True, V.BASELINE), V._p("bf16", "inference", 256, 1, "base"),
             V._p("bf16", "inference", 256, 1, "prefetch", 16, 8),
             V._p("bf16", "inference", 256, 1, "base", reset_after=False),
             V._p("bf16", "inference", 256, 1, "recompute", reset_after=False)]
    saved = []
    rows, not_run = strategy_table.measure_variants(items, 512, 5, 25, 10, 30, lambda r, n: saved.append(len(r)))
    assert not_run == [] and len(rows) == 5 and saved[-1] == 5
    pre = rows[2]
    assert (pre["variant"], pre["block_h"], pre["num_warps"], pre["reset_after"]) == ("prefetch", 16, 8, True)
    assert pre["vs_nn_gru"] == pytest.approx(4.0) and pre["vs_base"] == pytest.approx(2.0)
    assert "speedup_vs_nn_gru" not in pre  # no eager time: graphed only
    rec = rows[4]
    assert rec["reset_after"] is False and rec["vs_base"] == pytest.approx(4.0 / 3.0) and "vs_nn_gru" not in rec


def test_variant_run_stops_starting_rows_when_the_budget_is_spent(stubbed):
    items = V.matrix("smoke")
    costs = [1.0] * len(items)
    costs[3] = 100.0  # the fourth row would not finish inside the budget
    rows, not_run = strategy_table.measure_variants(items, 512, 5, 25, 10, 30, None, budget_s=50.0, costs=costs)
    assert [strategy_table.plan_emit.candidate_name(r) for r in rows][:3] == ["nn.GRU", "persistent",
                                                                             "persistent:prefetch+split+flags"]
    assert items[3] in not_run and len(rows) + len(not_run) == len(items)
    rows, not_run = strategy_table.measure_variants(items, 512, 5, 25, 10, 30, None, budget_s=0.5, costs=[1.0] * len(items))
    assert rows == [] and not_run == items


# ------------------------------------------------------------------------------------ barrier probes
def test_barrier_probe_forms_cross_every_barrier_under_the_interpreter():
    """Each barrier form (counter / flags, work split from the wait or not), three programs as
    threads: every program crosses every phase, and the work's result is the same in each form."""
    if torch.cuda.is_available():
        pytest.skip("interpreter test (the GPU run is bench/barrier_floor.py)")
    sys.path.insert(0, str(ROOT / "tests"))
    from concurrent_grid import concurrent_grid

    expected = None
    grid, steps, work = 3, 4, 2
    for flags in (False, True):
        for split in (False, True):
            group = torch.zeros(grid if flags else 1, dtype=torch.int32)
            out = torch.empty(grid)
            with concurrent_grid("random", 1, 60.0):
                barrier_floor.launch(group, out, grid, steps, work, flags, split)
            assert barrier_floor.barrier_ok(group, flags, grid, steps), (flags, split, group)
            assert not barrier_floor.barrier_ok(group, flags, grid, steps + 1)
            expected = out.clone() if expected is None else expected
            torch.testing.assert_close(out, expected)
    acc = torch.arange(grid, dtype=torch.float32)
    for _ in range(steps * work):
        acc = acc * 0.999 + 1.0
    torch.testing.assert_close(expected, acc)


def test_barrier_floor_configurations():
    configs = barrier_floor.configurations(132)
    assert barrier_floor.grids(132) == [1, 8, 32, 66, 132]
    assert len(configs) == 5 * (1 + len(barrier_floor.FORMS))
    assert {(c[1], c[2], c[3]) for c in configs if c[0] == 132} >= {
        ("counter", False, False), ("flags", True, False), ("counter work split", False, True),
        ("flags work split", True, True)}
    assert [barrier_floor.block_p(g) for g in (1, 8, 66, 132)] == [1, 8, 128, 256]


def test_recorded_plans_serialize_with_their_variant():
    """A plan carries its PersistentVariant: the row keeps its name (json.dumps of the plan's own
    __dict__ raises, which cut the strategy table's save after the variant field landed)."""
    import json

    from fastgru.launchers.plan import GRUPlan

    plan = GRUPlan("persistent", 16, 64, 256, 1, 4, 4, 8, PersistentVariant.parse("split+flags"))
    with pytest.raises(TypeError):
        json.dumps(plan.__dict__)
    d = json.loads(json.dumps(strategy_table._plan_dict(plan)))
    assert d["variant"] == "split+flags" and d["block_h"] == 64 and d["bwd_num_warps"] == 8


# ------------------------------------------------------------------------------------ the warm-up pool
def _hangs(seconds):
    """A job that reports a kernel launched and then does not return (a hung grid barrier)."""
    import time

    precompile.report("running", "gru_fwd_persistent_kernel")
    time.sleep(seconds)


def test_pool_reports_each_job_and_survives_failures_timeouts_and_hangs():
    """Real spawned workers (no CUDA: the jobs are plain functions): an exception, a job over its
    timeout, a kernel that never returns, and the deadline are each recorded, and the pool goes on."""
    import math
    import time

    r = precompile.run_pool([4.0, -1.0, 9.0], math.sqrt, 2, 30)
    assert [x["status"] for x in r] == ["ok", "error", "ok"] and r[2]["value"] == 3.0
    assert "ValueError" in r[1]["error"]
    r = precompile.run_pool([0.01, 30.0, 0.02], time.sleep, 1, 30, job_timeout_s=0.5)
    assert [x["status"] for x in r] == ["ok", "timeout", "ok"]  # its worker killed, a new one took the rest
    t0 = time.monotonic()
    r = precompile.run_pool([30.0, 0.01], time.sleep, 1, 0.5)
    assert [x["status"] for x in r] == ["unfinished", "not_run"] and time.monotonic() - t0 < 10
    r = precompile.run_pool([30.0], _hangs, 1, 30, hang_s=0.5)
    assert r[0]["status"] == "hung" and "gru_fwd_persistent_kernel" in r[0]["error"]
    assert precompile.run_pool([1.0], math.sqrt, 0, 30) == [{"status": "not_run"}]  # off


def test_variant_run_records_the_warm_up_and_goes_on(stubbed, monkeypatch, tmp_path):
    """The whole --variants run with the GPU stubbed and the pool run inline: a warm-up job that
    fails is recorded in its row and the row is still timed; a kernel that hung in the warm-up
    leaves out every row that needs it (recorded as errors); the document sums the pool up."""
    import json

    def inline_pool(tasks, fn, workers, deadline_s, **kw):
        out = []
        for task in tasks:
            try:
                out.append({"status": "ok", "value": fn(task), "seconds": 0.1})
            except Exception as exc:  # noqa: BLE001
                out.append({"status": "error", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.1})
        return [{"status": "hung", "error": "gru_bwd_persistent_kernel launched and not returned in 30 s"}
                if t["variant"] == "flags" else r for t, r in zip(tasks, out)]

    def warm(spec):
        assert spec["T"] == precompile.T_WARM and spec["cudnn_tf32"] == torch.backends.cudnn.allow_tf32
        if spec["variant"] == V.COMBINED:
            raise RuntimeError("ptxas: out of registers")
        return "ok"

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the pool stays off under the interpreter
    monkeypatch.setattr(precompile, "run_pool", inline_pool)
    monkeypatch.setattr(precompile, "warm_item", warm)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("fastgru.bench.environment.environment", lambda *a, **k: {"device_name": "stub"})
    assert strategy_table.main(["--variants", "smoke", "--out", str(tmp_path), "--precompile-workers", "2"]) == 0
    doc = json.loads((tmp_path / "strategies-variants-smoke.json").read_text())
    assert doc["complete"] and len(doc["rows"]) == len(V.matrix("smoke"))
    assert doc["precompile"]["counts"] == {"ok": 3, "error": 1, "hung": 1} and doc["precompile"]["workers"] == 2
    by = {(r["variant"], r["mode"], r["reset_after"]): r for r in doc["rows"] if r["provider"] == V.PERSISTENT}
    failed = by[(V.COMBINED, "inference", True)]
    assert failed["precompile"]["status"] == "error" and "out of registers" in failed["precompile"]["error"]
    assert failed["status"] == "ok" and failed["graphed_ms"] == 8.0  # timed all the same
    hung = by[("flags", "training", True)]
    assert hung["status"] == "error" and "not run" in hung["error"] and "graphed_ms" not in hung
    assert by[("base", "inference", True)]["precompile"]["status"] == "ok"
    assert sum(r["status"] == "ok" for r in doc["rows"]) == len(doc["rows"]) - 1
