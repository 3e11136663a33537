"""Attention dropout under CUDA graph capture (issue 25, hazard 4), simulated on the CPU.

A captured graph replays its kernel launches with the very arguments of the capture: every
non-tensor argument is baked in, every tensor argument is an address whose contents the replay
reads anew. So dropout draws a new mask per replay only if the seed reaches the kernels as a
tensor that torch's generator rewrites per call (torch's CUDA generator does, per replay), and
a capture fails outright on any host read of a device value (``.item()``, ``int(t)``, ...).

Here every attention kernel launch is intercepted over two calls with identical inputs: all
non-tensor launch arguments must be identical between the calls (what a replay reuses) while
the two dropout masks differ (what replays must do), and the backward must read the forward's
seed tensor. A second test runs forward and backward with every host read of a tensor's value
from fastgru's own code turned into an error. tests/test_gpu_hazards.py replays a real graph.
"""

import inspect
import sys

import pytest
import torch

import fastgru.functional as AF
from fastgru.launchers import attention as AA

N, TQ, T, F, D = 2, 5, 7, 4, 6


def _python_function(kernel):
    """The Python function under a kernel's autotuner, heuristics and jit wrappers."""
    while hasattr(kernel, "fn"):
        kernel = kernel.fn
    return kernel


@pytest.fixture
def launches(monkeypatch):
    """Every attention kernel launch as (kernel name, {argument name: value}), then run as usual."""
    seen, real = [], AA.launch

    def recording(kernel, grid, args, meta, configs=None):
        fn = _python_function(kernel)
        seen.append((fn.__name__, dict(zip(inspect.signature(fn).parameters, args))))
        return real(kernel, grid, args, meta, configs)

    monkeypatch.setattr(AA, "launch", recording)
    return seen


def _inputs(score, device):
    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen).to(device).requires_grad_()  # noqa: E731
    x = {"query": r(N, TQ, F), "keys": r(N, T, F), "values": r(N, T, D)}
    if score == "additive":
        x.update(query_weight=r(F, F), key_weight=r(F, F), v=r(F))
    return x


def _call(score, x):
    """Forward with weights and backward, dropout 0.5: (the weights, the gradients)."""
    if score == "additive":
        out, w = AF.additive_attention(x["query"], x["keys"], x["values"], query_weight=x["query_weight"],
                                       key_weight=x["key_weight"], v=x["v"], dropout_p=0.5, need_weights=True)
    else:
        out, w = AF.dot_attention(x["query"], x["keys"], x["values"], dropout_p=0.5, need_weights=True)
    grads = torch.autograd.grad(out.sum() + w.sum(), list(x.values()))
    return w.detach(), grads


def _is_host_value(v):
    return not isinstance(v, torch.Tensor)


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_replayed_launch_arguments_draw_new_masks(score, launches, device):
    x = _inputs(score, device)
    w1, _ = _call(score, x)
    first = list(launches)
    launches.clear()
    w2, _ = _call(score, x)
    second = list(launches)

    # What a graph replay would reuse: the same kernels with the same host arguments.
    assert [name for name, _ in first] == [name for name, _ in second]
    assert len(first) == 3, "forward, query-block and key-block backward kernels"
    for (name, a1), (_, a2) in zip(first, second):
        host1 = {k: v for k, v in a1.items() if _is_host_value(v)}
        host2 = {k: v for k, v in a2.items() if _is_host_value(v)}
        assert host1 == host2, f"{name}: host arguments differ between calls, a graph replay would repeat call 1"
        seed = a1["seed"]
        assert isinstance(seed, torch.Tensor) and seed.dtype == torch.int64 and seed.numel() == 1
        assert seed.device == x["query"].device
    # What replays must do: draw a new mask per call.
    assert not torch.equal(w1 == 0, w2 == 0), "two calls drew the same dropout mask"
    # The backward regenerates the forward's mask from the forward's seed tensor (its memory, as a replay would).
    for launch_list in (first, second):
        ptrs = {args["seed"].data_ptr() for _, args in launch_list}
        assert len(ptrs) == 1, "the backward kernels must read the forward's seed tensor"


def test_the_same_manual_seed_repeats_the_mask(device):
    x = _inputs("dot", device)
    torch.manual_seed(3)
    a, ga = _call("dot", x)
    b, _ = _call("dot", x)
    torch.manual_seed(3)
    c, gc = _call("dot", x)
    assert torch.equal(a, c) and all(torch.equal(g, h) for g, h in zip(ga, gc))
    assert not torch.equal(a == 0, b == 0)


_HOST_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")


@pytest.fixture
def no_host_reads(monkeypatch):
    """Any read of a tensor's value into Python from fastgru's own code raises, as it would fail
    (or synchronise) inside a CUDA graph capture. Reads by torch or Triton's interpreter (which
    runs the kernels on the host) are left alone."""
    for name in _HOST_READS:
        real = getattr(torch.Tensor, name)

        def guarded(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("fastgru"):
                raise AssertionError(f"{caller} read a tensor's value on the host (Tensor.{_name})")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_dropout_reads_no_host_value(score, device, no_host_reads):
    x = _inputs(score, device)
    w, grads = _call(score, x)
    assert (w == 0).any() and all(torch.isfinite(g).all() for g in grads)
