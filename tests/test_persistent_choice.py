"""The persistent kernel's step variants as the planner sees them: their names, the choice a
benchmark forces (persistent_choice) or a measured table entry names, and the refusals of a
variant that means nothing for a call. The kernels that run them: test_gru_persistent_variants.py.

The planner is asked as on a pretended 132-SM sm_90 with the measured table's fixtures of
tests/test_gru_dispatch_table.py, the compiled footprint given by its stand-in that always fits."""

import itertools
import json

import pytest
import torch

from fastgru.launchers import plan as planner
from fastgru.launchers import plan_table
from fastgru.launchers.launch import Resources
from fastgru.launchers.plan import PersistentChoice, PersistentVariant, persistent_choice
from test_gru_dispatch_table import fits, h100, table  # noqa: F401 - fixtures (h100, table) and the fit stand-in


def _all_variants():
    for bits in itertools.product((False, True), repeat=len(planner.VARIANT_SWITCHES)):
        for precision in (None, *planner.VARIANT_PRECISIONS):
            yield PersistentVariant(**dict(zip(planner.VARIANT_SWITCHES, bits)), precision=precision)


def test_every_variant_name_reads_back_as_itself():
    names = set()
    for v in _all_variants():
        assert PersistentVariant.parse(v.name) == v
        names.add(v.name)
    assert len(names) == 2 ** len(planner.VARIANT_SWITCHES) * (1 + len(planner.VARIANT_PRECISIONS))
    assert PersistentVariant().name == "base" and PersistentVariant.parse("split+prefetch").name == "prefetch+split"


@pytest.mark.parametrize("name", ["", "fast", "prefetch+prefetch", "tf32+tf32x3", "base+flags", "Prefetch"])
def test_a_bad_variant_name_is_refused(name):
    with pytest.raises(ValueError, match="variant"):
        PersistentVariant.parse(name)


def test_a_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        PersistentVariant(precision="fp16")


def test_the_kernels_constexprs_follow_the_switches():
    v = PersistentVariant.parse("prefetch+flags")
    assert v.forward_meta() == {"PREFETCH_GX": True, "SPLIT_BARRIER": False, "BARRIER_FLAGS": True,
                                "RECOMPUTE_RESET": False}
    assert v.backward_meta() == {"BARRIER_FLAGS": True}


def test_a_forced_choice_narrows_the_candidates_and_sets_the_variant(h100):
    plan = planner.plan_gru(8, 512, 1, "cuda", "persistent", torch.bfloat16, resources=fits)
    assert (plan.block_h, plan.num_warps, plan.variant) == (64, 4, PersistentVariant())
    with persistent_choice("prefetch+split", block_h=16, num_warps=8) as choice:
        assert str(choice) == "variant prefetch+split, BLOCK_H=16, 8 warps"
        plan = planner.plan_gru(8, 512, 1, "cuda", "persistent", torch.bfloat16, resources=fits)
        assert (plan.block_h, plan.hidden_blocks, plan.num_warps) == (16, 32, 8)
        assert plan.variant == PersistentVariant(prefetch=True, split=True)
    assert planner.plan_gru(8, 512, 1, "cuda", "persistent", torch.bfloat16, resources=fits).variant.name == "base"


def test_a_forced_choice_that_cannot_fit_says_so(h100):
    spills_at_64 = lambda p: Resources(255, 1000, p.num_warps, 64 if p.block_h == 64 else 0)  # noqa: E731
    with persistent_choice(block_h=64), pytest.raises(ValueError, match="BLOCK_H=64"):
        planner.plan_gru(1, 1024, 1, "cuda", "persistent", torch.bfloat16, resources=spills_at_64)


@pytest.mark.parametrize("kw,match", [(dict(block_h=128), "block_h"), (dict(num_warps=2), "num_warps"),
                                      (dict(variant="nope"), "variant")])
def test_a_bad_forced_choice_is_refused(kw, match):
    with pytest.raises(ValueError, match=match), persistent_choice(**kw):
        pass


@pytest.mark.parametrize("name,dtype,reset_after,match", [
    ("recompute", torch.bfloat16, True, "reset_after=False only"),
    ("tf32", torch.bfloat16, True, "float32 only"),
])
def test_a_variant_that_means_nothing_for_the_call_is_refused(h100, name, dtype, reset_after, match):
    with persistent_choice(name), pytest.raises(ValueError, match=match):
        planner.plan_gru(8, 256, 1, "cuda", "persistent", dtype, resources=fits, reset_after=reset_after)


def test_the_interpreter_plan_carries_the_forced_variant():
    with persistent_choice("flags"):
        plan = planner.plan_gru(4, 32, 1, "cpu", "persistent", torch.float32)
    assert plan.strategy == "persistent" and plan.variant.name == "flags"


def _entry(**extra):
    return {"arch": "sm_90", "dtype": "bf16", "tf32": None, "mode": "inference", "reset_after": True,
            "directions": 1, "h": [182, 362], "b": [1, 2], "strategy": "persistent",
            "measured": {"H": 256, "B": 1, "device": "test GPU", "ratio": {"persistent": 2.0}}, **extra}


def test_a_table_entry_names_the_winning_variant_block_and_warps(h100, table):
    table(_entry(variant="prefetch+split+flags", block_h=32, num_warps=8))
    plan, why = planner.plan_with_reason(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits)
    assert plan.strategy == "persistent" and (plan.block_h, plan.num_warps) == (32, 8)
    assert plan.variant == PersistentVariant(prefetch=True, split=True, flags=True)
    assert "[variant prefetch+split+flags, BLOCK_H=32, 8 warps]" in why
    table(_entry())  # no fields: the base kernel, the candidates' order
    plan, why = planner.plan_with_reason(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits)
    assert (plan.block_h, plan.variant.name) == (64, "base") and "variant" not in why


def test_a_forced_choice_outranks_the_table(h100, table):
    table(_entry(variant="flags", block_h=32))
    with persistent_choice("split", block_h=16):
        plan = planner.plan_gru(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits)
    assert (plan.variant.name, plan.block_h) == ("split", 16)


@pytest.mark.parametrize("entry,match", [
    (_entry(variant="warp-speed"), "cannot run"),
    (_entry(variant="recompute"), "cannot run"),
    (_entry(block_h=128), "block_h=128"),
    (dict(_entry(variant="flags"), strategy="rows"), "persistent only"),
])
def test_a_table_naming_a_choice_this_version_cannot_run_is_refused(tmp_path, entry, match):
    path = tmp_path / "plan_table.json"
    path.write_text(json.dumps({"format": 1, "entries": [entry]}))
    with pytest.raises(RuntimeError, match=match):
        plan_table.load(str(path))


def test_the_shipped_table_reads_with_its_choices():
    for e in plan_table.load()["entries"]:
        if e["strategy"] == "persistent":
            assert isinstance(PersistentChoice.of_entry(e), PersistentChoice)


def test_explain_names_the_persistent_variant_and_warps(h100):
    from fastgru.functional.dispatch import Explanation

    with persistent_choice("prefetch+flags", block_h=32):
        plan = planner.plan_gru(8, 512, 1, "cuda", "persistent", torch.bfloat16, resources=fits)
    line = str(Explanation("triton", "persistent", "forced", "inference", plan))
    assert line.endswith("BLOCK_H=32 K=512, 16 programs per direction, 4 warps, variant prefetch+flags")


@pytest.mark.parametrize("record", ["dict", "name"])
def test_a_plan_reads_back_from_its_record(record):
    """A plan recorded as a dict (dataclasses.asdict, as the compile check's picks are stored)
    or with its variant's name is the same plan again."""
    import dataclasses

    plan = dataclasses.replace(planner._plan("persistent", 8, 512, 16, 32, 512, 8),
                               variant=PersistentVariant.parse("split+flags"))
    d = dataclasses.asdict(plan)
    if record == "name":
        d["variant"] = plan.variant.name
    assert planner.GRUPlan(**d) == plan and hash(planner.GRUPlan(**d)) == hash(plan)
