"""Co-residency from the driver and the fallback when a persistent launch is refused anyway.

The persistent kernel's grid barrier needs every program resident at once; the dispatcher
counts how many fit from the driver's occupancy query (the hand estimate only where no driver
answers, the compile check). Should the cooperative launch still be refused (an MPS limit, a
carve-out the query did not see), the dispatcher's next strategy runs with one warning a
process, and a forced strategy='persistent' raises. Simulated here: the interpreter plans
persistent when told to, and the launch is made to fail the way Triton reports a refused
cooperative launch.
"""

import warnings
from types import SimpleNamespace

import pytest
import torch

from fastgru import backend, functional, gpu
from fastgru.launchers import gru_layer as AG
from fastgru.launchers import launch as L
from fastgru.launchers import plan as planner
from fastgru.launchers.launch import Resources
from test_gru_small_hidden import layer_against_reference

REFUSAL = "Triton Error [CUDA]: too many blocks in cooperative launch"


@pytest.fixture
def fresh_refusals(monkeypatch):
    """An empty record of refused shapes and no warning given yet in this 'process'."""
    monkeypatch.setattr(planner, "_refused", set())
    monkeypatch.setattr(planner, "_warned", False)


@pytest.fixture
def device_refuses(monkeypatch, fresh_refusals):
    """The dispatcher picks persistent (as on a GPU for bf16/fp16) until a shape is refused, and
    every cooperative launch of the named passes ('forward', 'backward') fails. Returns the
    log of launches: (kernel name, cooperative, refused)."""
    real_plan, real_launch = AG.plan_gru, AG.launch
    log = []
    refuse = {"passes": ("forward", "backward")}

    def plan_gru(B, H, D, device, strategy=None, dtype=torch.float32, resources=None, **kw):
        if strategy is None and not planner.was_refused(B, H, D, device, dtype):
            strategy = "persistent"
        return real_plan(B, H, D, device, strategy, dtype, resources=resources, **kw)

    def launch(kernel, grid, args, meta, configs=None):
        job = L.Launch(kernel, grid, tuple(args), dict(meta))
        cooperative = bool(meta.get("launch_cooperative_grid"))
        refused = cooperative and ("forward" if "_fwd_" in job.name else "backward") in refuse["passes"]
        log.append((job.name, cooperative, refused))
        if refused:
            raise RuntimeError(REFUSAL)
        return real_launch(kernel, grid, args, meta, configs)

    monkeypatch.setattr(AG, "plan_gru", plan_gru)
    monkeypatch.setattr(AG, "launch", launch)
    return SimpleNamespace(log=log, refuse=refuse)


def _fallback_warnings(record):
    return [w for w in record if issubclass(w.category, planner.PersistentFallbackWarning)]


def test_a_refused_launch_falls_back_once_with_one_warning(device_refuses):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        layer_against_reference(3, 3, 4, 12, 2, torch.float32)
    first = _fallback_warnings(record)
    assert len(first) == 1 and "cooperative launch" in str(first[0].message) and REFUSAL in str(first[0].message)
    tried = [name for name, cooperative, _ in device_refuses.log if cooperative]
    assert tried == ["gru_fwd_persistent_kernel"], "after the refusal the backward must not try persistent again"
    assert {"gru_fwd_rows_kernel", "gru_bwd_rows_kernel"} <= {name for name, *_ in device_refuses.log}

    device_refuses.log.clear()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        layer_against_reference(3, 3, 4, 12, 2, torch.float32)  # the same shape again
        layer_against_reference(2, 5, 4, 12, 1, torch.float32)  # another shape refused: silent too
    assert not _fallback_warnings(record)
    assert [name for name, cooperative, _ in device_refuses.log if cooperative] == ["gru_fwd_persistent_kernel"]


def test_a_refused_backward_launch_falls_back(device_refuses):
    device_refuses.refuse["passes"] = ("backward",)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        layer_against_reference(3, 3, 4, 12, 1, torch.float32, reset_after=False)
    assert len(_fallback_warnings(record)) == 1
    names = [name for name, *_ in device_refuses.log]
    assert names[0] == "gru_fwd_persistent_kernel" and "gru_bwd_persistent_kernel" in names
    assert names[-1] == "gru_bwd_rows_kernel"


def test_a_forced_persistent_launch_that_is_refused_raises(device_refuses):
    x = torch.randn(3, 2, 4)
    h0 = torch.zeros(1, 2, 12)
    w = [torch.randn(36, 4), torch.randn(36, 12), torch.randn(36), torch.randn(36)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: an error instead
        with pytest.raises(RuntimeError, match=r"strategy='persistent'.*refused the cooperative launch.*strategy=None"):
            functional.gru(x, h0, [w], 1, False, strategy="persistent")
    assert not planner.was_refused(2, 12, 1, x.device, torch.float32)


def test_other_launch_errors_are_not_swallowed(monkeypatch, fresh_refusals):
    """Only a persistent plan falls back: a rows launch that fails raises as it is."""
    def broken(*args, **kwargs):
        raise RuntimeError("Triton Error [CUDA]: an illegal memory access was encountered")

    monkeypatch.setattr(AG, "launch", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        layer_against_reference(2, 2, 3, 8, 1, torch.float32)


# -- co-residency from the driver


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))


def test_the_driver_count_overrides_the_estimate(h100):
    assert planner.resident_programs(Resources(32, 0, 4), "cuda") == 16  # the estimate: threads, 2048 / 128
    assert planner.resident_programs(Resources(32, 0, 4, resident=1), "cuda") == 1
    assert planner.resident_programs(Resources(32, 0, 4, spill_bytes=8, resident=3), "cuda") == 0


def test_the_plan_uses_the_driver_count(h100, fresh_refusals):
    """B = 8, H = 256 in bf16: the 64-unit block is co-resident by the estimate (4 programs on
    132 SMs); the driver says no block of it fits an SM (0), so the plan takes the next size."""
    def footprint(p, resident):
        return Resources(128, 3 * p.block_h * p.block_k * 2, p.num_warps, resident=resident(p))

    est = planner.plan_gru(8, 256, 1, "cuda", None, torch.bfloat16, resources=lambda p: footprint(p, lambda p: None))
    assert (est.strategy, est.block_h) == ("persistent", 64)
    plan = planner.plan_gru(8, 256, 1, "cuda", None, torch.bfloat16,
                            resources=lambda p: footprint(p, lambda p: 0 if p.block_h == 64 else 1))
    assert (plan.strategy, plan.block_h) == ("persistent", 32)
    none = planner.plan_gru(8, 256, 1, "cuda", None, torch.bfloat16, resources=lambda p: footprint(p, lambda p: 0))
    assert none.strategy == "rows"


class _Compiled:
    """What Triton's warmup returns, as far as launch.resources reads it."""

    def __init__(self):
        self.function, self.n_regs, self.n_spills = 0xC0FFEE, 96, 0
        self.metadata = SimpleNamespace(shared=40960, num_warps=8)

    def _init_handles(self):
        pass


class _Kernel:
    __name__ = "occupancy_probe_kernel"

    def warmup(self, *args, **kwargs):
        return _Compiled()


def test_resources_asks_the_driver(monkeypatch):
    monkeypatch.setattr(L, "_resources_seen", {})
    asked = []
    monkeypatch.setattr(gpu, "max_active_blocks", lambda *a: asked.append(a) or 3)
    res = L.resources(_Kernel(), (4, 1, 1), [7], {"BLOCK_H": 64})
    assert res == Resources(96, 40960, 8, 0, resident=3)
    assert asked == [(0xC0FFEE, 256, 40960)]  # the loaded function, its threads, its dynamic shared memory


def test_no_driver_no_count():
    """This machine has no CUDA driver (and the compile check pretends a GPU): the estimate is used."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA driver is present")
    assert gpu.max_active_blocks(0xC0FFEE, 128, 0) is None
    with gpu.assume_gpu(132):
        assert gpu.max_active_blocks(0xC0FFEE, 128, 0) is None
