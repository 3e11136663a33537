"""Every launch configuration an H100 can pick for the fused attention kernels runs here, through
the interpreter, forward and backward, against a float64 reference.

On a GPU the launcher hands the autotuner attention_configs(score, Tq, T, F, D, dtype, arch=90),
up to four configurations per shape bucket; the interpreter runs only its own single one. So
for each score and each dtype class (the dtype the launcher computes in: bf16/fp16 with 2-byte
tl.dot operands, fp32 in float64, fp32 under TF32 in float32, fp64) this file enumerates the
buckets of realistic shapes, collects every distinct configuration a bucket can get, and runs
each once with exactly that configuration (the configuration list monkeypatched to it) on the
smallest shape of the first bucket that gets it. Query blocks 1, 2, 4 and 8 (the additive
score's broadcast products), the 8-warp tiles and the wide key blocks are among them.

num_warps and num_stages are launch options the interpreter ignores, so configurations that
differ only there are one run; they are counted (test_every_gpu_config_is_run) and the compile
check builds each of them for sm_90.
"""

import functools
import itertools
import zlib

import pytest
import torch

from fastgru import reference
from fastgru.kernels import attention_configs as C
from fastgru.launchers import attention as AA
from fastgru.testing import check_close

import fastgru.ops.attention  # noqa: F401  (registers torch.ops.fastgru.attention_*)

ARCH = 90
# dtype class -> (input dtype, TF32 allowed, the dtype the launcher computes in = what attention_configs sees)
CLASSES = {
    "bf16": (torch.bfloat16, False, torch.bfloat16),
    "fp16": (torch.float16, False, torch.float16),
    "fp32": (torch.float32, False, torch.float64),
    "tf32": (torch.float32, True, torch.float32),
    "fp64": (torch.float64, False, torch.float64),
}
SCORES = ("additive", "dot")
# Buckets of shapes: every size a power of two up to 512 (F from 8: smaller attention and key
# sizes get the lists of 8). No block is wider than 128, so larger buckets get lists seen here
# (test_larger_buckets_add_nothing).
POW2 = [2 ** i for i in range(10)]
BUCKETS = list(itertools.product(POW2, POW2, POW2[3:], POW2))


def blocks(cfg):
    return tuple(cfg.kwargs[n] for n in C.BLOCKS)


def smallest(key):
    """The smallest shape of a bucket (every size one past half its power of two)."""
    return tuple(k // 2 + 1 for k in key)


@functools.cache
def gpu_configs(score, kdt):
    """{blocks: (config, bucket)}: every distinct block configuration attention_configs gives a
    realistic shape of ``score`` computed in ``kdt`` on sm_90, with the cheapest bucket that
    gets it (fewest query-key-feature products)."""
    found = {}
    for key in sorted(BUCKETS, key=lambda k: (k[0] * k[1] * (k[2] + k[3]), k)):
        for cfg in C.attention_configs(score, *key, dtype=kdt, arch=ARCH):
            found.setdefault(blocks(cfg), (cfg, key))
    return found


@functools.cache
def all_launch_options(score, kdt):
    return {(blocks(c), c.num_warps, c.num_stages) for key in BUCKETS for c in C.attention_configs(score, *key, dtype=kdt, arch=ARCH)}


# The interpreter runs bf16, fp16 and TF32 launches as one float32 kernel (its tl.dot operands
# are the compute dtype, its TF32 is exact) and fp32 and fp64 as one float64 kernel: a block
# configuration that several classes of one compute dtype get runs once, in each such class in turn.
SAME_KERNEL = (("bf16", "fp16", "tf32"), ("fp32", "fp64"))


def _cases():
    cases = []
    for score, group in itertools.product(SCORES, SAME_KERNEL):
        lists = {cls: gpu_configs(score, CLASSES[cls][2]) for cls in group}
        union = sorted(set().union(*lists.values()))
        turn = 0
        for b in union:
            owners = [cls for cls in group if b in lists[cls]]
            cls = owners[turn % len(owners)]
            turn += 1
            cases.append(pytest.param(score, cls, b, id=f"{score}-{cls}-q{b[0]}t{b[1]}f{b[2]}d{b[3]}"))
    return cases


CASES = _cases()


def reference_attention(score, q, k, w, v, lengths, mask, scale):
    """The fused op's math in float64: (context, weights)."""
    q, k, v = q.double(), k.double(), v.double()
    if score == "additive":
        s = torch.tanh(q[:, :, None, :] + k[:, None, :, :]) @ w.double()
    else:
        s = scale * q @ k.transpose(1, 2)
    p = reference.masked_softmax(s, reference.attention_ignore_mask(lengths, mask, q.shape[0], k.shape[1], q.device))
    return p @ v, p


def run_config(monkeypatch, score, cls, cfg, shape, seed):
    """Forward and backward of torch.ops.fastgru.attention_fwd with exactly ``cfg``; every
    output and gradient checked against the float64 reference."""
    dtype, tf32, kdt = CLASSES[cls]
    monkeypatch.setattr(C, "attention_configs", lambda *a, **kw: [cfg])
    monkeypatch.setattr(AA, "tf32_allowed", lambda t, follows: tf32 and t.dtype == torch.float32)
    Tq, T, F, D = shape
    kind = seed % 4  # none, lengths, key padding mask, both
    N = 2 if kind in (1, 3) else 1  # with lengths, row 0 keeps half its keys (none when T = 1)
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=gen, dtype=torch.float64) * scale).to(dtype).requires_grad_()  # noqa: E731
    q, k, v = r(N, Tq, F, scale=0.7), r(N, T, F, scale=0.7), r(N, T, D)
    w = r(F) if score == "additive" else None
    lengths = mask = None
    if kind in (1, 3):
        lengths = torch.randint(1, T + 1, (N,), generator=gen)
        lengths[0] = T // 2  # may be 0: a fully masked row
    if kind in (2, 3):
        mask = torch.rand(N, T, generator=gen) < 0.3
        mask[-1, 0] = False
    need_weights = seed % 2 == 0
    scale = 1.0 if score == "additive" else 0.5
    inputs = (q, k, w, v) if w is not None else (q, k, v)

    out, _, probs = torch.ops.fastgru.attention_fwd(q, k, w, v, lengths, mask, scale, score, need_weights, 1, 0.0, None)
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    lq, lk, *lw, lv = leaves
    r_out, r_p = reference_attention(score, lq, lk, lw[0] if lw else None, lv, lengths, mask, scale)
    g_out = torch.randn(r_out.shape, generator=gen, dtype=torch.float64)
    g_p = torch.randn(r_p.shape, generator=gen, dtype=torch.float64) if need_weights else None
    loss = lambda o, p: (o.double() * g_out).sum() + ((p.double() * g_p).sum() if need_weights else 0.0)  # noqa: E731
    grads = torch.autograd.grad(loss(out, probs), inputs)
    ref_grads = torch.autograd.grad(loss(r_out, r_p), leaves)

    err = lambda name: f"{name} ({score}, {cls}, blocks {blocks(cfg)}, shape {shape}, masks {kind})"  # noqa: E731
    check_close(out, r_out, dtype, tf32=tf32, name=err("context"))
    if need_weights:
        check_close(probs, r_p, dtype, tf32=tf32, name=err("weights"))
    names = ("dq", "dk", "dw", "dvalues") if w is not None else ("dq", "dk", "dvalues")
    for name, g, ref in zip(names, grads, ref_grads):
        assert g.dtype == dtype, name
        check_close(g, ref, dtype, tf32=tf32, name=err(name))


@pytest.mark.parametrize("score, cls, block", CASES)
def test_gpu_config_runs_in_the_interpreter(monkeypatch, score, cls, block):
    cfg, key = gpu_configs(score, CLASSES[cls][2])[block]
    run_config(monkeypatch, score, cls, cfg, smallest(key), zlib.crc32(f"{score}{cls}{block}".encode()))


def test_every_gpu_config_is_run():
    """The cases above run every block configuration of every score and dtype class (launch
    options aside) at least once in a class of the same compute dtype, every class at least
    once, query blocks 1, 2, 4, 8 and 16 included; both warp counts occur."""
    ran = {(s, c, b) for s, c, b in (p.values for p in CASES)}
    for score, group in itertools.product(SCORES, SAME_KERNEL):
        for cls in group:
            options = all_launch_options(score, CLASSES[cls][2])
            assert {b for b, _, _ in options} <= {b for s, c, b in ran if s == score and c in group}, (score, cls)
            assert any(s == score and c == cls for s, c, _ in ran), (score, cls)
            assert {w for _, w, _ in options} == {4, 8}, (score, cls)
            if score == "additive":
                assert {b[0] for b, _, _ in options} == {1, 2, 4, 8, 16}, (score, cls)


def test_larger_buckets_add_nothing():
    """Past 512 (up to Tq 4096, T 8192, F and D 1024) a size changes no list: the grid above
    sees every configuration a realistic shape can get."""
    for score, cls in itertools.product(SCORES, CLASSES):
        kdt = CLASSES[cls][2]
        for key in BUCKETS[::97]:
            for i, big in itertools.product(range(4), (1024, 4096, 8192)):
                if i >= 2 and big > 1024:
                    continue
                grown, capped = list(key), list(key)
                grown[i], capped[i] = big, 512
                got = [str(c) for c in C.attention_configs(score, *grown, dtype=kdt, arch=ARCH)]
                assert got == [str(c) for c in C.attention_configs(score, *capped, dtype=kdt, arch=ARCH)], (score, cls, grown)
