"""bench/latency_model.py's PTX reading on a small synthetic kernel (no compile, no GPU) and the
compile check's persistent-variants family listing (no compile either)."""

import pytest

from bench import latency_model as L

# A rotated time loop as LLVM lays it out: the latch first, then the header and the body (state
# load, an MMA, gate math, gx load, state store), the arrive, the spin loop, the back branch.
# A prefetch (ld.global whose result is unused before the arrive) and a store between arrive and
# wait (off-path work) are in it too.
PTX = """
.visible .entry k(
	.param .u64 k_param_0
)
{
	.reg .b32 %r<40>;
	ld.param.u64 %rd1, [k_param_0];
	bra.uni $L__BB0_2;
$L__BB0_5:                              // latch
	bar.sync 0;
	@!%p9 bra $L__BB0_6;
$L__BB0_2:
	ld.global.cg.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
	st.shared.v4.b32 [%r20], {%r1, %r2, %r3, %r4};
	bar.sync 0;
	ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r5, %r6, %r7, %r8}, [%r20];
	mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 { %r9, %r10, %r11, %r12 }, { %r5, %r6, %r7, %r8 }, { %r5, %r6 }, { %r9, %r10, %r11, %r12 };
	ld.global.b32 { %r13 }, [ %rd2 + 0 ];
	add.f32 %r14, %r9, %r13;
	ex2.approx.f32 %r15, %r14;
	ld.global.b32 { %r30 }, [ %rd3 + 0 ];
	st.global.b32 [ %rd4 + 0 ], { %r15 };
	bar.sync 0;
	@%p1 red.global.gpu.release.add.u32 [ %rd5 + 0 ], %r16;
	st.global.b32 [ %rd6 + 0 ], { %r15 };
	@%p1 ld.global.gpu.acquire.b32 %r17, [ %rd5 + 0 ];
	setp.ge.s32 %p2, %r17, %r18;
	@%p2 bra $L__BB0_5;
$L__BB0_4:
	@%p1 ld.global.gpu.acquire.b32 %r17, [ %rd5 + 0 ];
	setp.lt.s32 %p3, %r17, %r18;
	@%p3 bra $L__BB0_4;
	bra.uni $L__BB0_5;
$L__BB0_6:
	ret;
}
"""


def test_instructions_skip_directives_labels_and_comments():
    ins = L.instructions(PTX)
    assert ins[0].opcode == "ld.param.u64" and ins[-1].opcode == "ret"
    latch = next(i for i in ins if "$L__BB0_5" in i.labels)
    assert latch.opcode == "bar.sync"
    assert [i.category for i in ins if i.opcode.startswith("mma")] == ["mma"]


def test_loops_and_time_loop():
    ins = L.instructions(PTX)
    spans = L.loops(ins)
    assert len(spans) == 2  # the time loop (from the latch) and the spin loop
    first, last = L.time_loop(ins)
    assert "$L__BB0_5" in ins[first].labels and ins[last].opcode == "bra.uni"


def test_step_path_counts_the_critical_path_only():
    step = L.step_path(PTX)
    assert step.barriers == 1
    p = step.path
    # state load, gx load, prefetch: 3 global loads; the state store; no atomics (the arrive is
    # the barrier's); the latch bar.sync and the one before the arrive belong to the barrier.
    assert (p["ld_global"], p["st_global"], p["atomic"], p["mma"], p["mufu"], p["bar_sync"]) == (3, 1, 0, 1, 1, 1)
    # off-path: the store between the arrive and the wait.
    assert step.off_path[0]["st_global"] == 1 and step.off_path[0]["ld_global"] == 0
    assert step.loop_counts["atomic"] == 1


def test_blocking_rounds_leave_out_the_prefetch():
    step = L.step_path(PTX)
    # the state load (used by the shared store) and the gx load (used by the add) block, in two
    # bar.sync-delimited groups; the prefetch into %r30 is never used on the path.
    assert L.blocking_load_rounds(step.path_instrs) == 2
    assert L.mma_shape(step.path_instrs) == ("mma.sync", 16, 8, 16)


def test_no_barrier_loop_is_a_clear_error():
    with pytest.raises(ValueError, match="grid-barrier"):
        L.step_path(".visible .entry k()\n{\n\tadd.f32 %r1, %r2, %r3;\n\tret;\n}\n")


def test_barrier_floor_interpolates_the_measured_points():
    assert L.barrier_floor_us(1) == pytest.approx(0.657)
    assert L.barrier_floor_us(132) == pytest.approx(1.00)
    assert 0.769 < L.barrier_floor_us(16) < 0.902
    assert L.barrier_floor_us(1000) == pytest.approx(1.00)


def test_prediction_adds_its_terms():
    step = L.step_path(PTX)
    r = L.predict(step, grid=16, k_total=16)
    terms = r["barrier_us"] + r["l2_us"] + r["mma_us"] + r["alu_us"] + r["mufu_us"] + r["bar_sync_us"]
    assert r["us_per_step"] == pytest.approx(terms, abs=2e-3)
    assert r["l2_rounds"] == 3  # two blocking load rounds and the stores before the arrive
    assert r["barrier_us"] == pytest.approx(L.barrier_floor_us(16), abs=1e-3)


def test_compile_family_lists_every_variant_block_and_warp_count():
    from bench import variants as V
    from bench.compile import cases as C

    listed = C.variant_cases()
    bf16 = {(c.variant, c.block_h, c.num_warps) for c in listed if c.dtype == "bf16" and c.reset_after}
    assert bf16 == {(v, b, w) for v in V.VARIANTS for b in (16, 32, 64) for w in (4, 8)}
    assert {c.variant for c in listed if not c.reset_after} == {"base", "recompute"}
    assert {c.variant for c in listed if c.dtype == "fp32-tf32"} == set(C.FP32_VARIANTS)
    assert all(c.block_h in (16, 32) for c in listed if c.dtype == "fp32-tf32")
    assert {c.B for c in listed if c.variant == V.COMBINED and c.dtype == "bf16"} == {1, 8, 64}
    assert "persistent-variants" not in C.FAMILIES  # opt-in: not in the full report nor CI's quick form


def test_recompute_is_modelled_beside_its_two_barrier_twin():
    cases = L.default_cases(["flags", "prefetch+recompute"], ["bf16"], [256], [1], [32], [4], ["inference"])
    assert [(c.variant, c.reset_after) for c in cases] == [
        ("flags", True), ("prefetch+recompute", False), ("prefetch", False)]
