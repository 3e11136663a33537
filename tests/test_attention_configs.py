"""Launch configurations of the attention kernels, checked on the host (no GPU, no kernel runs):
at most four per shape, decided by the shape's power-of-two bucket and dtype, every one within
the target's shared memory and the kernels' own block constraints, and the autotuner's pruning
is the very list the launchers hand on."""

import itertools

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver

import fastgru.launchers.attention as AA
from fastgru.launchers.launch import Launch
from fastgru.kernels import attention as K
from fastgru.kernels import attention_configs as C

SCORES = ("additive", "dot")
NAMES = C.BLOCKS  # BLOCK_Q, BLOCK_T, BLOCK_F, BLOCK_D
KERNELS = (K.attention_fwd, K.attention_bwd_dq, K.attention_bwd_dkv)


def configs_of(score):
    return lambda *shape, **kw: C.attention_configs(score, *shape, **kw)


def shared_of(score):
    return lambda cfg, dot_b, cdt_b: C.shared_bytes(score, cfg, dot_b, cdt_b)


FAMILIES = {score: (configs_of(score), shared_of(score), NAMES) for score in SCORES}
DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
ARCHS = (80, 90)
TQ = (1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 100, 128, 257, 512)
T = (1, 5, 16, 31, 64, 100, 128, 511, 512, 1000, 2048)
A = (8, 13, 32, 64, 100, 128, 256, 512)
D = (1, 3, 16, 64, 100, 128, 200, 256, 512)
SHAPES = list(itertools.product(TQ, T, A, D))[::7]  # a spread that still touches every value


def blocks(cfg, names):
    return tuple(cfg.kwargs[n] for n in names)


def describe(configs):
    return [(sorted(c.kwargs.items()), c.num_warps, c.num_stages) for c in configs]


def test_shared_limits_are_the_opt_in_maxima():
    assert C.SHARED_LIMIT[80] == 163 * 1024 == 166912
    assert C.SHARED_LIMIT[86] == C.SHARED_LIMIT[89] == 99 * 1024 == 101376
    assert C.SHARED_LIMIT[90] == 227 * 1024 == 232448
    assert C.shared_limit(75) == C.SHARED_LIMIT_OTHER <= min(C.SHARED_LIMIT.values())


def test_bucket_is_the_next_power_of_two():
    assert C.bucket(1, 2, 3, 17) == (1, 2, 4, 32)
    assert C.bucket(64, 65, 1000, 2048) == (64, 128, 1024, 2048)
    assert C.bucket(0) == (1,)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("arch", ARCHS)
def test_few_configs_within_shared_memory(family, dtype, arch):
    configs_fn, shared, _ = FAMILIES[family]
    dot_b, cdt_b = C.element_bytes(dtype)
    for shape in SHAPES:
        configs = configs_fn(*shape, dtype=dtype, arch=arch)
        assert 1 <= len(configs) <= 4, (shape, describe(configs))
        assert len(set(map(str, configs))) == len(configs), (shape, describe(configs))
        for c in configs:
            assert shared(c, dot_b, cdt_b) <= C.SHARED_LIMIT[arch], (shape, c)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shapes_in_one_bucket_get_one_list(family, dtype):
    configs_fn = FAMILIES[family][0]
    for shape in SHAPES:
        key = C.bucket(*shape)
        low = tuple(k // 2 + 1 for k in key)  # the smallest member of each bucket
        expect = describe(configs_fn(*key, dtype=dtype, arch=90))
        assert describe(configs_fn(*shape, dtype=dtype, arch=90)) == expect, shape
        assert describe(configs_fn(*low, dtype=dtype, arch=90)) == expect, (shape, low)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("arch", ARCHS)
def test_dot_configs_meet_the_kernels_constraints(dtype, arch):
    names = FAMILIES["dot"][2]
    for shape in SHAPES:
        for c in C.attention_configs("dot", *shape, dtype=dtype, arch=arch):
            assert min(blocks(c, names)) >= 16, (shape, c)  # every product is a tl.dot
            assert c.num_warps in (4, 8) and c.num_stages in (2, 3), (shape, c)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("arch", ARCHS)
def test_additive_configs_meet_the_kernels_constraints(dtype, arch):
    names = FAMILIES["additive"][2]
    cdt_b = C.element_bytes(dtype)[1]
    for shape in SHAPES:
        for c in C.attention_configs("additive", *shape, dtype=dtype, arch=arch):
            bq, bt, ba, bd = blocks(c, names)
            assert bq == min(C.next_pow2(shape[0]), 16), (shape, c)  # no padded query rows below 16
            if bq >= 16:  # the tl.dot path: every side that meets in a dot
                assert min(bq, bt, bd) >= 16, (shape, c)
            else:  # the broadcast path: [BQ, BT, BD] is a register tile too
                assert bq * bt * bd * cdt_b <= 2 * C.TILE_BYTES_PER_THREAD * 32 * c.num_warps, (shape, c)
            assert bq * bt * ba * cdt_b <= C.TILE_BYTES_PER_THREAD * 32 * c.num_warps, (shape, c)


def test_interpreter_gets_one_config_without_the_driver(monkeypatch):
    def no_driver(*args, **kwargs):
        raise AssertionError("the interpreter's configuration touched the driver")

    monkeypatch.setattr(C, "target_arch", no_driver)
    for (configs_fn, _, _), shape, dtype in itertools.product(FAMILIES.values(), SHAPES[::10], DTYPES):
        assert len(configs_fn(*shape, dtype=dtype, interpret=True)) == 1


class _FakeDriver:
    def __init__(self, arch):
        self.arch = arch

    def get_current_target(self):
        return GPUTarget("cuda", self.arch, 32)


def _target(monkeypatch, arch):
    """Make a CUDA target of ``arch`` the active driver for one test (driver.set_active, undone
    by restoring the field it sets: reset_active would look for a real GPU)."""
    monkeypatch.setattr(driver, "_active", _FakeDriver(arch))


@pytest.mark.parametrize("arch", (80, 86, 90))
def test_default_arch_is_the_current_target(monkeypatch, arch):
    _target(monkeypatch, arch)
    for (configs_fn, _, _), dtype in itertools.product(FAMILIES.values(), DTYPES):
        for shape in SHAPES[::5]:
            assert describe(configs_fn(*shape, dtype=dtype)) == describe(configs_fn(*shape, dtype=dtype, arch=arch))


def test_the_limit_prunes():
    """A target with little shared memory keeps fewer configurations: the estimate is applied."""
    dropped = 0
    for (configs_fn, shared, _), dtype in itertools.product(FAMILIES.values(), DTYPES):
        dot_b, cdt_b = C.element_bytes(dtype)
        for shape in SHAPES:
            small = configs_fn(*shape, dtype=dtype, arch=75)
            assert all(shared(c, dot_b, cdt_b) <= C.SHARED_LIMIT_OTHER for c in small)
            dropped += len(configs_fn(*shape, dtype=dtype, arch=90)) - len(small)
    assert dropped > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_autotuner_prunes_to_the_launchers_list(monkeypatch, family):
    """The autotuner's key is the score and the KEY_* bucket arguments, and its pruning returns
    exactly what the launcher hands to fastgru.launch for that score and shape, on the current
    target."""
    _target(monkeypatch, 90)
    configs_fn = FAMILIES[family][0]
    every = {str(c) for c in configs_fn()}
    for kernel in KERNELS:
        assert kernel.keys[0] == "SCORE" and len(kernel.keys) == 5
        assert all(k.startswith("KEY_") and k in kernel.arg_names for k in kernel.keys[1:])
        assert every <= {str(c) for c in kernel.configs}  # the autotuner's list holds every score's
        for shape, dtype in itertools.product(SHAPES[::9], DTYPES):
            nargs = dict(zip(kernel.keys[1:], C.bucket(*shape)), val=torch.empty(0, dtype=dtype))
            pruned = kernel.early_config_prune(kernel.configs, nargs, SCORE=family, CDT=None)
            assert describe(pruned) == describe(configs_fn(*shape, dtype=dtype)), (kernel, shape)
            assert {str(c) for c in pruned} <= every  # members of the score's own list


def test_launchers_pass_the_score_and_bucket(monkeypatch):
    """Every attention launch carries its score as SCORE and the shape's bucket in its KEY_*
    arguments, with at least one configuration."""
    seen = []

    def launch(kernel, grid, args, meta, configs):
        named = dict(zip(kernel.arg_names, args))
        seen.append((Launch(kernel, grid, args, meta).name, meta["SCORE"], tuple(named[k] for k in kernel.keys[1:]),
                     len(configs)))

    monkeypatch.setattr(AA, "launch", launch)
    N, Tq, T, A, D = 2, 5, 33, 12, 20
    key = C.bucket(Tq, T, A, D)
    qp, kp, w, v = torch.randn(N, Tq, A), torch.randn(N, T, A), torch.randn(A), torch.randn(N, T, D)
    stats, do = torch.zeros(N, 2, Tq), torch.zeros(N, Tq, D)
    for score in SCORES:
        AA.attention_forward(score, qp, kp, w if score == "additive" else None, v, None, None, 1.0, False)
        AA.attention_backward(score, qp, kp, w if score == "additive" else None, v, None, None, 1.0, stats, do, None, True)
    kernels = ["attention_fwd", "attention_bwd_dq", "attention_bwd_dkv"]
    assert [s[:2] for s in seen] == [(k, score) for score in SCORES for k in kernels]
    assert all(s[2] == key and s[3] >= 1 for s in seen), seen
    assert triton.next_power_of_2(T) == key[1] == 64


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_register_accumulators_stay_within_the_spill_free_blocks(dtype):
    """The backward holds its gradients in registers ([BT, BF] and [BT, BD] per key block,
    [BQ, BF] per query block), so the lists keep to the blocks that compiled without spills on
    sm_90 (bench.compile): additive value blocks of at most 64 columns; 4- and 8-byte dot
    operands with key blocks of at most 32 and feature blocks of at most 64; 4 warps only while
    one [BQ, max(BT, BD, BF)] operand tile stays under 4 KB."""
    dot_b, _ = C.element_bytes(dtype)
    for shape in SHAPES:
        for c in C.attention_configs("additive", *shape, dtype=dtype, arch=90):
            assert c.kwargs["BLOCK_D"] <= 64, (shape, c)
        for c in C.attention_configs("dot", *shape, dtype=dtype, arch=90):
            bq, bt, bf, bd = blocks(c, NAMES)
            if dot_b >= 4:
                assert bt <= 32 and bf <= 64, (shape, c)
            if c.num_warps == 4:
                assert dot_b * bq * max(bt, bd, bf) < 4096, (shape, c)
