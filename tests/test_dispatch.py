"""The dispatcher's choices on a (pretended) 132-SM GPU: which strategy each shape gets, and that a
persistent plan always fits in one wave. The choices follow the H100 strategy table committed
under bench/results/nvidia-h100-80gb-hbm3/strategies/."""

from types import SimpleNamespace

import pytest
import torch

from fastgru import backend, dispatch


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,H", [(1, 256), (8, 512), (128, 512), (1, 1024), (8, 1024)])
def test_low_precision_defaults_to_persistent_where_it_fits(h100, B, H, dtype):
    plan = dispatch.plan_gru(B, H, 1, "cuda", None, dtype)
    assert plan.strategy == "persistent"
    assert plan.programs <= 132
    assert (plan.num_warps, plan.backward_warps) == (4, 8)


@pytest.mark.parametrize("B,H,expected", [(1, 256, "rows"), (128, 256, "rows"), (8, 512, "stepwise"), (1, 1024, "stepwise")])
def test_fp32_stays_on_rows_or_stepwise(h100, B, H, expected):
    assert dispatch.plan_gru(B, H, 1, "cuda", None, torch.float32).strategy == expected


def test_shapes_persistent_cannot_hold_fall_back(h100):
    plan = dispatch.plan_gru(128, 1024, 1, "cuda", None, torch.bfloat16)
    assert plan.strategy == "stepwise"
    with pytest.raises(ValueError, match="cannot hold"):
        dispatch.plan_gru(128, 1024, 1, "cuda", "persistent", torch.bfloat16)


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("B", [1, 8, 16, 17, 64, 128, 512])
@pytest.mark.parametrize("H", [64, 100, 256, 300, 512, 1024])
def test_every_persistent_plan_is_one_wave(h100, B, H, D):
    try:
        plan = dispatch.plan_gru(B, H, D, "cuda", "persistent", torch.bfloat16)
    except ValueError:
        return
    assert plan.programs * D <= 132
    assert plan.block_k >= H and plan.hidden_blocks * plan.block_h >= H
