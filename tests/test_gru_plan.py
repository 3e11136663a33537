"""The dispatcher's choices on a (pretended) 132-SM H100: which strategy each shape gets, and
that a persistent plan is taken only where the compiled kernel (its footprint given here as the
launcher would measure it) runs without spills and its whole grid is co-resident. The choices
between rows and stepwise follow the H100 strategy table committed under
bench/results/nvidia-h100-80gb-hbm3/strategies/."""

from types import SimpleNamespace

import pytest
import torch

from fastgru import backend, gpu
from fastgru.launchers import plan as planner
from fastgru.launchers.launch import Resources


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))


def footprint(plan, bytes_per_weight=2, registers=168, spill_from_block_h=None):
    """A stand-in for the compiled persistent kernel: the weight tiles and the fp32 state tile in
    shared memory (as the sm_90 compile shows at H = 1024), spilling from a given hidden-block
    size on."""
    shared = 3 * plan.block_h * plan.block_k * bytes_per_weight + plan.block_k * plan.block_b * 4
    spill = 256 if spill_from_block_h and plan.block_h >= spill_from_block_h else 0
    return Resources(registers, shared, plan.num_warps, spill)


def test_resident_programs_is_the_tightest_limit(h100):
    assert planner.resident_programs(Resources(255, 0, 4), "cuda:0") == 2  # 8192 registers a warp, 64K an SM
    assert planner.resident_programs(Resources(128, 100_000, 4), "cuda:0") == 2  # shared memory: 2 x (100 KB + 1 KB)
    assert planner.resident_programs(Resources(32, 0, 4), "cuda:0") == 16  # threads: 2048 / 128
    assert planner.resident_programs(Resources(64, 1000, 4, spill_bytes=8), "cuda:0") == 0
    assert planner.resident_programs(Resources(64, gpu.HOPPER_LIMITS[2] + 1, 4), "cuda:0") == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,H", [(1, 256), (8, 256), (64, 256), (1, 64)])
def test_low_precision_takes_the_wgmma_block_where_it_fits(h100, B, H, dtype):
    plan = planner.plan_gru(B, H, 1, "cuda", None, dtype, resources=footprint)
    assert plan.strategy == "persistent"
    assert plan.block_h == min(64, H) and plan.block_b == max(16, min(64, 1 << (B - 1).bit_length()))
    assert (plan.num_warps, plan.backward_warps) == (4, 8)


@pytest.mark.parametrize("B,H,block_h", [(8, 512, 32), (8, 1024, 16), (1, 1024, 16)])
def test_smaller_hidden_blocks_where_64_does_not_fit(h100, B, H, block_h):
    """H = 512: a 64-unit slice fits shared memory but spills (the compile shows it); H = 1024:
    64 and 32 units of bf16 weights exceed an SM's 227 KB."""
    res = lambda p: footprint(p, spill_from_block_h=64 if H == 512 else None)  # noqa: E731
    plan = planner.plan_gru(B, H, 1, "cuda", None, torch.bfloat16, resources=res)
    assert (plan.strategy, plan.block_h) == ("persistent", block_h)


def test_eight_warps_where_four_spill(h100):
    res = lambda p: Resources(255, 50_000, p.num_warps, 64 if p.num_warps == 4 else 0)  # noqa: E731
    plan = planner.plan_gru(64, 256, 1, "cuda", None, torch.bfloat16, resources=res)
    assert (plan.block_h, plan.num_warps, plan.backward_warps) == (64, 8, 8)


def test_a_kernel_that_cannot_run_is_skipped(h100):
    plan = planner.plan_gru(8, 256, 1, "cuda", None, torch.bfloat16,
                             resources=lambda p: None if p.block_h == 64 else footprint(p))
    assert plan.block_h == 32


def test_shapes_persistent_cannot_hold_fall_back(h100):
    spills = lambda p: footprint(p, spill_from_block_h=16)  # noqa: E731
    assert planner.plan_gru(8, 1024, 1, "cuda", None, torch.bfloat16, resources=spills).strategy == "stepwise"
    assert planner.plan_gru(128, 256, 1, "cuda", None, torch.bfloat16, resources=spills).strategy == "rows"
    with pytest.raises(ValueError, match="cannot hold"):
        planner.plan_gru(8, 1024, 1, "cuda", "persistent", torch.bfloat16, resources=spills)
    # 8 batch blocks x 64 hidden blocks x 2 directions: more programs than the SMs hold at once
    assert planner.plan_gru(512, 1024, 2, "cuda", None, torch.bfloat16, resources=footprint).strategy != "persistent"


def test_without_a_compiled_kernel_persistent_is_not_considered(h100):
    assert planner.plan_gru(8, 256, 1, "cuda", None, torch.bfloat16).strategy == "rows"
    with pytest.raises(ValueError, match="cannot hold"):
        planner.plan_gru(8, 256, 1, "cuda", "persistent", torch.bfloat16)


@pytest.mark.parametrize("B,H,expected", [(1, 256, "rows"), (128, 256, "rows"), (8, 512, "stepwise"), (1, 1024, "stepwise")])
def test_fp32_stays_on_rows_or_stepwise(h100, B, H, expected):
    plan = planner.plan_gru(B, H, 1, "cuda", None, torch.float32, resources=lambda p: footprint(p, 4))
    assert plan.strategy == expected


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("B", [1, 8, 16, 17, 64, 128, 512])
@pytest.mark.parametrize("H", [1, 5, 8, 16, 64, 100, 256, 300, 512, 1024])
def test_every_persistent_plan_is_co_resident(h100, B, H, D):
    try:
        plan = planner.plan_gru(B, H, D, "cuda", "persistent", torch.bfloat16, resources=footprint)
    except ValueError:
        return
    assert plan.programs * D <= 132 * planner.resident_programs(footprint(plan), "cuda")
    assert plan.block_k >= max(H, 16) and plan.hidden_blocks * plan.block_h >= H  # K: the MMA's minimum at least
    assert plan.block_b * plan.batch_blocks >= B and plan.block_b in (16, 32, 64)


@pytest.mark.parametrize("strategy", ["rows", "stepwise"])
def test_rows_and_stepwise_step_down_to_a_tile_that_does_not_spill(h100, strategy):
    first, second, *_ = planner.tile_candidates(strategy, 64, 300)
    res = lambda p: Resources(255, 0, p.num_warps, 200 if p == first else 0)  # noqa: E731
    assert planner.plan_gru(64, 300, 1, "cuda", strategy, torch.float32, resources=res) == second
    assert planner.plan_gru(64, 300, 1, "cuda", strategy, torch.float32) == first  # nothing compiled: the default
    spills = lambda p: Resources(255, 0, p.num_warps, 8)  # noqa: E731
    assert planner.plan_gru(64, 300, 1, "cuda", strategy, torch.float32, resources=spills) == planner.tile_candidates(strategy, 64, 300)[-1]


@pytest.mark.parametrize("B,H", [(1, 16), (8, 64), (64, 300), (512, 1024)])
def test_tile_candidates_meet_the_mma_minimums(B, H):
    plans = planner.tile_candidates("rows", B, H)
    assert len(plans) == len(set(plans)) >= 1
    for p in plans:
        assert min(p.block_b, p.block_h, p.block_k) >= 16 and p.block_k <= p.block_h
        assert p.batch_blocks * p.block_b >= B and p.hidden_blocks * p.block_h >= H
