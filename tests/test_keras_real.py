"""fastgru's Keras interop against Keras 3 itself, on its PyTorch backend (no TensorFlow).

tests/test_interop_weights.py and tests/test_lstm_interop.py hold the mappings to Keras' equations
written out in numpy; here the reference is the real thing: ``keras.layers.GRU`` (reset_after True
and False, with and without bias), ``keras.layers.Bidirectional(GRU)``, ``keras.layers.LSTM``,
masks (``mask=`` and a ``Masking`` layer) against fastgru's ``lengths=``. Both directions are
checked: Keras' weights -> ``from_keras`` -> a fastgru module, and a fastgru module -> ``to_keras``
-> ``layer.set_weights``. Each case compares the outputs, the final states and the gradients with
respect to the input, the initial state and every weight. On the torch backend Keras' variables
are torch Parameters and a layer call is a chain of torch ops, so torch.autograd differentiates
through it like through any module (the gradient checks below would fail if it did not).

Keras is imported with ``KERAS_BACKEND=torch`` and ``KERAS_TORCH_DEVICE=cpu`` (Keras reads both at
its first import; the environment is put back afterwards, and test_keras_leaves_torch_alone checks
that the import changed none of torch's global settings). The file skips when keras is not
installed (``pip install -e .[test]``) and when keras was already imported in this process with
another backend (a backend cannot change after keras' first import).

Precision, measured with keras 3.15.1. The Keras layers are built with ``dtype="float64"`` and the
fastgru modules in float64, and each comparison is held to fastgru.testing's contract for the
dtype Keras actually computes in (relative error ||a - b|| / ||b|| <= 1e-10 for float64, 1e-5
for float32):

* float64 where Keras' torch backend runs its own recurrence loop, in the kernel's dtype: a GRU
  with reset_after=True and an LSTM, without a mask. Measured: at most 2e-16 (outputs, states)
  and 5e-16 (gradients).
* float32 everywhere else (reset_after=False, or any mask): Keras then runs its generic RNN loop
  over the cell, whose ``keras.ops.matmul`` computes in ``keras.backend.result_type(float64,
  float64)``, which is float32 on every backend but TensorFlow (Keras follows JAX's default of no
  64-bit types), so a float64 layer's products are rounded to float32. Measured: at most 1.1e-7
  (outputs, states) and 2.1e-7 (gradients), 50 times under the limit. A wrong mapping fails by
  far (checked: from_keras with the two bias rows swapped, to_keras without bias_hh in the sum).

The mapping tests run the modules on the CPU's PyTorch path (``backend.using("torch")``, as
tests/test_interop_weights.py does); test_through_the_kernels runs two cases through fastgru's
kernels (the interpreter without CUDA).
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest
import torch

import fastgru
from fastgru import backend
from fastgru.testing import rel_error, tolerance

F64 = torch.float64
B, T, IN, H = 3, 5, 3, 4
LENGTHS = [5, 2, 4]  # unsorted on purpose: Keras' masks are per row, in any order


def _torch_settings():
    """torch's process-wide settings a library import could change."""
    return {
        "default dtype": torch.get_default_dtype(),
        "default device": str(torch.get_default_device()),
        "grad enabled": torch.is_grad_enabled(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul precision": torch.get_float32_matmul_precision(),
        "anomaly mode": torch.is_anomaly_enabled(),
    }


def _import_keras():
    """keras on its torch backend, with the environment restored after the import."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        name = loaded.backend.backend()
        if name != "torch":
            pytest.skip(
                f"keras was already imported in this process with the {name!r} backend, and these tests need "
                "KERAS_BACKEND=torch before keras' first import: run this file in a process of its own",
                allow_module_level=True,
            )
        return loaded
    saved = dict(os.environ)
    os.environ["KERAS_BACKEND"] = "torch"
    os.environ["KERAS_TORCH_DEVICE"] = "cpu"
    try:
        return pytest.importorskip(
            "keras", reason="keras (or a module it imports) is not installed; `pip install -e .[test]` brings it"
        )
    finally:
        # Keras read both at import; it also sets TF_FORCE_GPU_ALLOW_GROWTH, for TensorFlow only.
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


_KERAS_ENV = ("KERAS_BACKEND", "KERAS_TORCH_DEVICE", "TF_FORCE_GPU_ALLOW_GROWTH")
_before = {**_torch_settings(), **{k: os.environ.get(k) for k in _KERAS_ENV}}
keras = _import_keras()
_after = {**_torch_settings(), **{k: os.environ.get(k) for k in _KERAS_ENV}}
_CHANGED_BY_IMPORT = {k: (_before[k], _after[k]) for k in _before if _before[k] != _after[k]}


# Keras' own conversions call np.array(tensor, copy=False) on torch tensors (numpy 2 warns).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(autouse=True)
def _torch_path():
    with backend.using("torch"):
        yield


def test_keras_leaves_torch_alone():
    # Keras' import must not change what the rest of the suite runs with (the environment
    # included: the KERAS_* variables are put back, so a later process keeps its own choice).
    assert _CHANGED_BY_IMPORT == {}


# ---------------------------------------------------------------------------------------------
# Helpers


def rng_for(*key):
    """A generator seeded by ``key`` (stable across processes, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def fill(layer, rng):
    """Random values (biases included: Keras initialises them to zero) in every weight of ``layer``."""
    layer.set_weights([rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()])


def fill_module(module, rng):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape)) * 0.5))


def keras_variables(layer):
    """The torch Parameters behind a Keras layer's weights (Bidirectional: forward then backward)."""
    values = [w.value for w in layer.weights]
    assert all(isinstance(v, torch.nn.Parameter) and v.requires_grad for v in values)
    return values


def swap_zr(a):
    """Swap the first two of three gate blocks along the last axis: Keras' z, r, h <-> nn's r, z, n."""
    n = a.shape[-1] // 3
    return torch.cat([a[..., n : 2 * n], a[..., :n], a[..., 2 * n :]], dim=-1)


def keras_grads_by_name(grads, cell, reset_after, suffix=""):
    """Keras' weight gradients of one layer, [kernel, recurrent_kernel(, bias)], in fastgru's names
    and layout. A gradient moves like the weight it belongs to: transposed (GRU: and z, r swapped).
    Keras' single bias (LSTM; GRU reset_after=False) feeds bias_ih and bias_hh alike, which only
    enter as a sum, so both of fastgru's biases get its gradient."""
    order = swap_zr if cell == "gru" else (lambda a: a)
    out = {f"weight_ih_l0{suffix}": order(grads[0]).T, f"weight_hh_l0{suffix}": order(grads[1]).T}
    if len(grads) == 3:
        bias = grads[2]
        if bias.dim() == 2:  # GRU reset_after=True: rows input, recurrent
            out[f"bias_ih_l0{suffix}"], out[f"bias_hh_l0{suffix}"] = order(bias[0]), order(bias[1])
        else:
            out[f"bias_ih_l0{suffix}"] = out[f"bias_hh_l0{suffix}"] = order(bias)
    return out


def agree(ours, theirs, dtype, what):
    """fastgru's tensor against Keras' within the contract's limit for Keras' compute dtype."""
    assert ours.shape == theirs.shape, f"{what}: shapes {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    err = rel_error(ours, theirs)
    assert err <= tolerance(dtype), (
        f"{what}: relative difference {err:.3e} over the {dtype} limit (keras {keras.__version__}; a float64 "
        "case near 1e-7 means Keras computed it in float32: see keras_dtype)"
    )


def keras_dtype(cell, reset_after, masked):
    """What Keras' torch backend computes a float64 layer in (see the module docstring)."""
    own_loop = not masked and (cell == "lstm" or reset_after)
    return F64 if own_loop else torch.float32


def run_both(layer, module, *, cell="gru", reset_after=True, directions=1, lengths=None, masking=None, device="cpu"):
    """Call the Keras layer (on the CPU) and the fastgru module (on ``device``) on the same input,
    initial state and loss; compare the outputs (all steps, or the valid ones under a mask), the
    final states and every gradient."""
    rng = rng_for("run", cell, reset_after, directions, lengths is not None, masking is not None)
    x = torch.from_numpy(rng.normal(size=(B, T, IN)))
    n_states = 2 if cell == "lstm" else 1
    states = [torch.from_numpy(rng.normal(size=(directions, B, H)) * 0.5) for _ in range(n_states)]
    mask = None
    if lengths is not None:
        mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
        if masking is not None:
            x = x * mask[..., None]  # the padding Masking finds: steps equal to mask_value everywhere
    out_w = torch.from_numpy(rng.normal(size=(B, T, directions * H)))
    state_w = [torch.from_numpy(rng.normal(size=(directions, B, H))) for _ in range(n_states)]

    # Keras: inputs (B, T, IN); initial_state a list of (B, H), forward states first.
    # With a Masking layer no initial state is passed: Keras 3.15 drops the mask a Masking layer
    # attached to the input when a call also gets initial_state= (it only fills in a layer's mask
    # argument from its input when the call has one tensor argument).
    with_state = masking is None
    xk = x.clone().requires_grad_()
    sk = [s.clone().requires_grad_() for s in states] if with_state else []
    initial = [s[d] for d in range(directions) for s in sk] or None
    if masking is not None:
        result = layer(masking(xk))
    else:
        result = layer(xk, initial_state=initial, mask=mask)
    y_k, finals = result[0], result[1:]
    final_k = [torch.stack([finals[d * n_states + i] for d in range(directions)]) for i in range(n_states)]

    # fastgru: the same, states (directions, B, H).
    xf = x.to(device).requires_grad_()
    sf = [s.to(device).requires_grad_() for s in states] if with_state else []
    hx = (tuple(sf) if cell == "lstm" else sf[0]) if with_state else None
    y_f, final_f = module(xf, hx, lengths=None if lengths is None else torch.tensor(lengths))
    final_f = [f.cpu() for f in final_f] if cell == "lstm" else [final_f.cpu()]
    y_f = y_f.cpu()

    valid = torch.ones(B, T, 1, dtype=F64) if mask is None else mask[..., None].to(F64)
    dtype = keras_dtype(cell, reset_after, mask is not None)
    agree(y_f * valid, y_k * valid, dtype, "output")
    for i, (a, b) in enumerate(zip(final_f, final_k)):
        agree(a, b, dtype, f"final state {i}")

    def loss(y, finals):
        return (y * valid * out_w).sum() + sum((f * w).sum() for f, w in zip(finals, state_w))

    k_vars = keras_variables(layer)
    f_names, f_params = zip(*module.named_parameters())
    g_k = torch.autograd.grad(loss(y_k, final_k), [xk, *sk, *k_vars])
    g_f = torch.autograd.grad(loss(y_f, final_f), [xf, *sf, *f_params])
    g_f = [g.cpu() for g in g_f]
    agree(g_f[0], g_k[0], dtype, "grad input")
    n_given = len(sk)
    for i in range(n_given):
        agree(g_f[1 + i], g_k[1 + i], dtype, f"grad initial state {i}")
    per_layer = len(k_vars) // directions
    expected = {}
    for d in range(directions):
        grads = g_k[1 + n_given + d * per_layer : 1 + n_given + (d + 1) * per_layer]
        expected.update(keras_grads_by_name(grads, cell, reset_after, "_reverse" if d else ""))
    assert sorted(expected) == sorted(f_names)
    for name, g in zip(f_names, g_f[1 + n_given :]):
        agree(g, expected[name], dtype, f"grad {name}")
    return y_k, y_f


def gru_layer(reset_after, use_bias, dtype="float64"):
    return keras.layers.GRU(H, reset_after=reset_after, use_bias=use_bias, return_sequences=True,
                            return_state=True, dtype=dtype)


def built(layer, rng):
    layer.build((None, T, IN))
    fill(layer, rng)
    return layer


# ---------------------------------------------------------------------------------------------
# GRU


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_from_keras(reset_after, use_bias):
    layer = built(gru_layer(reset_after, use_bias), rng_for("from", reset_after, use_bias))
    module = fastgru.from_keras(*layer.get_weights(), reset_after=layer.reset_after, dtype=F64)
    assert module.bias is use_bias and module.batch_first
    run_both(layer, module, reset_after=reset_after)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_to_keras(reset_after, use_bias):
    # Every parameter random, bias_hh included: with reset_after=False Keras' one bias holds the sum.
    module = fastgru.GRU(IN, H, bias=use_bias, batch_first=True, reset_after=reset_after, dtype=F64)
    fill_module(module, rng_for("to", reset_after, use_bias))
    layer = gru_layer(reset_after, use_bias)
    layer.build((None, T, IN))
    layer.set_weights(fastgru.to_keras(module))
    run_both(layer, module, reset_after=reset_after)


@pytest.mark.parametrize("how", ["mask", "Masking"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_mask_as_lengths(reset_after, how):
    # A right-padded Keras mask is fastgru's lengths=: the same valid outputs, final states and
    # gradients. At the padded steps Keras repeats the last valid output; fastgru gives zeros there
    # (as PyTorch's pack_padded_sequence does).
    layer = built(gru_layer(reset_after, True), rng_for("mask", reset_after, how))
    module = fastgru.from_keras(*layer.get_weights(), reset_after=reset_after, dtype=F64)
    masking = keras.layers.Masking(0.0, dtype="float64") if how == "Masking" else None
    y_k, y_f = run_both(layer, module, reset_after=reset_after, lengths=LENGTHS, masking=masking)
    for b, n in enumerate(LENGTHS):
        assert torch.equal(y_k[b, n:], y_k[b, n - 1 : n].expand(T - n, H))
        assert torch.count_nonzero(y_f[b, n:]) == 0


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_bidirectional(reset_after, use_bias, masked):
    # keras.layers.Bidirectional(GRU) with merge_mode="concat" (its default): from_keras_bidirectional,
    # and back through to_keras_bidirectional into a second Bidirectional layer.
    lengths = LENGTHS if masked else None
    bi = keras.layers.Bidirectional(gru_layer(reset_after, use_bias), dtype="float64")
    built(bi, rng_for("bi", reset_after, use_bias, masked))
    w = bi.get_weights()
    module = fastgru.from_keras_bidirectional(w[: len(w) // 2], w[len(w) // 2 :], reset_after=reset_after, dtype=F64)
    assert module.bidirectional
    y_k, _ = run_both(bi, module, reset_after=reset_after, directions=2, lengths=lengths)
    if masked:  # Bidirectional zeroes the padded steps, as fastgru does
        for b, n in enumerate(LENGTHS):
            assert torch.count_nonzero(y_k[b, n:]) == 0

    fill_module(module, rng_for("bi-to", reset_after, use_bias, masked))
    back = keras.layers.Bidirectional(gru_layer(reset_after, use_bias), dtype="float64")
    back.build((None, T, IN))
    back.set_weights(fastgru.to_keras_bidirectional(module))
    run_both(back, module, reset_after=reset_after, directions=2, lengths=lengths)


def test_gru_float32_default_layer():
    # The everyday setting: Keras' default float32 layer and fastgru's default float32 module, each
    # held to the float32 contract against the float64 run of the same weights (Keras' own loop, in
    # float64: reset_after=True, no mask).
    layer = built(keras.layers.GRU(H, return_sequences=True), rng_for("fp32"))
    assert all(w.dtype == np.float32 for w in layer.get_weights())
    reference = gru_layer(True, True)
    reference.build((None, T, IN))
    reference.set_weights([w.astype(np.float64) for w in layer.get_weights()])
    module = fastgru.from_keras(*layer.get_weights())
    assert module.weight_ih_l0.dtype == torch.float32
    x = torch.from_numpy(rng_for("fp32-x").normal(size=(B, T, IN)))
    expected = reference(x)[0]
    y_k, y_f = layer(x.float()), module(x.float())[0]
    assert y_k.dtype == y_f.dtype == torch.float32
    agree(y_k, expected, torch.float32, "keras float32")
    agree(y_f, expected, torch.float32, "fastgru float32")
    back = keras.layers.GRU(H, return_sequences=True)
    back.build((None, T, IN))
    back.set_weights(fastgru.to_keras(module))
    assert torch.equal(back(x.float()), y_k)  # the very same float32 weights


# ---------------------------------------------------------------------------------------------
# LSTM


@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm(use_bias):
    layer = keras.layers.LSTM(H, use_bias=use_bias, return_sequences=True, return_state=True, dtype="float64")
    built(layer, rng_for("lstm", use_bias))
    module = fastgru.from_keras(*layer.get_weights(), cell="lstm", dtype=F64)
    assert isinstance(module, fastgru.LSTM)
    run_both(layer, module, cell="lstm")

    fill_module(module, rng_for("lstm-to", use_bias))  # bias_hh random too: Keras' bias is the sum
    layer.set_weights(fastgru.to_keras(module))
    run_both(layer, module, cell="lstm")


def test_lstm_bidirectional_masked():
    bi = keras.layers.Bidirectional(
        keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype="float64"), dtype="float64"
    )
    built(bi, rng_for("lstm-bi"))
    w = bi.get_weights()
    module = fastgru.from_keras_bidirectional(w[:3], w[3:], cell="lstm", dtype=F64)
    run_both(bi, module, cell="lstm", directions=2, lengths=LENGTHS)
    fill_module(module, rng_for("lstm-bi-to"))
    bi.set_weights(fastgru.to_keras_bidirectional(module))
    run_both(bi, module, cell="lstm", directions=2, lengths=LENGTHS)


# ---------------------------------------------------------------------------------------------
# fastgru's kernels (the interpreter without CUDA), against Keras on the CPU


@pytest.mark.parametrize("case", ["bidirectional, reset_after=True", "masked, reset_after=False"])
def test_through_the_kernels(case, device):
    reset_after = case.endswith("True")
    directions = 2 if case.startswith("bidirectional") else 1
    lengths = None if directions == 2 else LENGTHS
    layer = gru_layer(reset_after, True)
    if directions == 2:
        layer = keras.layers.Bidirectional(layer, dtype="float64")
    built(layer, rng_for("kernels", case))
    w = layer.get_weights()
    if directions == 2:
        module = fastgru.from_keras_bidirectional(w[:3], w[3:], reset_after=reset_after, dtype=F64, device=device)
    else:
        module = fastgru.from_keras(*w, reset_after=reset_after, dtype=F64, device=device)
    with backend.using("interpret" if device == "cpu" else "auto"):
        assert backend.uses_kernels(module.weight_ih_l0)
        run_both(layer, module, reset_after=reset_after, directions=directions, lengths=lengths, device=device)
