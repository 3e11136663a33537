"""Each mistake raises what nn.GRU / nn.GRUCell raise, before any kernel runs."""

import warnings

import pytest
import torch
from torch import nn

import fastgru


def _raises_same(make_ref, make_ours, call):
    """Call on nn's module and on ours; both must raise, with the same exception type."""
    with pytest.raises(Exception) as ref_err:
        call(make_ref())
    with pytest.raises(type(ref_err.value)) as ours_err:
        call(make_ours())
    assert str(ours_err.value), "error message must not be empty"
    return ours_err.value


GRU_CALLS = {
    "rank4": lambda m: m(torch.randn(2, 3, 4, 5)),
    "rank1": lambda m: m(torch.randn(5)),
    "feature-size": lambda m: m(torch.randn(4, 3, 6)),
    "hx-shape": lambda m: m(torch.randn(4, 3, 5), torch.randn(2, 2, 7)),
    "hx-batch": lambda m: m(torch.randn(4, 3, 5), torch.randn(2, 4, 7)),
    "hx-rank-unbatched": lambda m: m(torch.randn(4, 5), torch.randn(2, 1, 7)),
    "hx-rank-batched": lambda m: m(torch.randn(4, 3, 5), torch.randn(2, 7)),
    "input-dtype": lambda m: m(torch.randn(4, 3, 5, dtype=torch.float64)),
    "input-int": lambda m: m(torch.randint(0, 3, (4, 3, 5))),
    "zero-length": lambda m: m(torch.randn(0, 3, 5)),
}


@pytest.mark.parametrize("name", list(GRU_CALLS))
def test_gru_forward_errors_match(name):
    err = _raises_same(lambda: nn.GRU(5, 7, num_layers=2), lambda: fastgru.GRU(5, 7, num_layers=2), GRU_CALLS[name])
    if name == "feature-size":
        assert "Expected 5, got 6" in str(err)
    if name == "hx-shape":
        assert "(2, 3, 7)" in str(err)


def test_hx_dtype_mismatch_raises_runtime_error():
    with pytest.raises(RuntimeError, match="dtype"):
        fastgru.GRU(5, 7)(torch.randn(4, 3, 5), torch.randn(1, 3, 7, dtype=torch.float64))


# Mistakes nn.RNNBase rejects in every family's constructor (test_lstm_errors adds the LSTM's own).
RNN_CTOR = {
    "hidden0": dict(input_size=5, hidden_size=0),
    "input0": dict(input_size=0, hidden_size=3),
    "layers0": dict(input_size=5, hidden_size=3, num_layers=0),
    "dropout-high": dict(input_size=5, hidden_size=3, dropout=1.5),
    "dropout-bool": dict(input_size=5, hidden_size=3, dropout=True),
    "hidden-float": dict(input_size=5, hidden_size=3.0),
    "bias-int": dict(input_size=5, hidden_size=3, bias=1),
    "batch-first-int": dict(input_size=5, hidden_size=3, batch_first=1),
    # two mistakes: the one nn checks first is reported
    "dropout-high-bias-int": dict(input_size=5, hidden_size=3, dropout=1.5, bias=1),
    "hidden0-bias-int": dict(input_size=5, hidden_size=0, bias=1),
}
CTOR = {**RNN_CTOR, "proj": dict(input_size=5, hidden_size=3, proj_size=2)}


def assert_constructor_error_matches(ref_cls, our_cls, kwargs, same_message: bool = True) -> None:
    """Both constructors raise for ``kwargs``: ours nn's exception type and, with
    ``same_message``, nn's message."""
    with pytest.raises(Exception) as ref_err:
        ref_cls(**kwargs)
    with pytest.raises(type(ref_err.value)) as ours_err:
        our_cls(**kwargs)
    if same_message:
        assert str(ours_err.value) == str(ref_err.value)


@pytest.mark.parametrize("name", list(CTOR))
def test_constructor_errors_match(name):
    assert_constructor_error_matches(nn.GRU, fastgru.GRU, CTOR[name])


def assert_one_layer_dropout_warns(cls, **kwargs) -> None:
    """nn's warning: dropout acts between layers, so one layer with dropout warns; two do not."""
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        cls(5, 3, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(5, 3, num_layers=2, dropout=0.5, **kwargs)


def test_dropout_with_one_layer_warns():
    assert_one_layer_dropout_warns(fastgru.GRU)


CELL_CALLS = {
    "rank3": lambda m: m(torch.randn(2, 3, 5)),
    "feature-size": lambda m: m(torch.randn(2, 6)),
    "hx-batch": lambda m: m(torch.randn(2, 5), torch.randn(3, 3)),
    "hx-size": lambda m: m(torch.randn(2, 5), torch.randn(2, 4)),
}


@pytest.mark.parametrize("name", list(CELL_CALLS))
def test_cell_errors_match(name):
    _raises_same(lambda: nn.GRUCell(5, 3), lambda: fastgru.GRUCell(5, 3), CELL_CALLS[name])


def forbid_kernels(monkeypatch, *targets) -> None:
    """Make each (module, name) fail the test if it is called: every check must raise first."""

    def boom(*a, **k):
        raise AssertionError("a kernel ran before the input was validated")

    for module, name in targets:
        monkeypatch.setattr(module, name, boom)


def assert_each_raises(calls, make) -> None:
    """Each call on a fresh ``make()`` raises one of the exception types nn raises for a mistake."""
    for call in calls:
        with pytest.raises((ValueError, RuntimeError, TypeError)):
            call(make())


def test_errors_raise_before_any_kernel(monkeypatch):
    import fastgru.ops.gru_cell as cell_ops
    import fastgru.ops.gru_layer as layer_ops

    forbid_kernels(monkeypatch, (layer_ops, "gru_layer_forward"), (cell_ops, "gru_cell_forward"))
    assert_each_raises(GRU_CALLS.values(), lambda: fastgru.GRU(5, 7, num_layers=2))
    assert_each_raises(CELL_CALLS.values(), lambda: fastgru.GRUCell(5, 3))


def assert_bad_lengths_rejected(run) -> None:
    """``run(lengths)`` runs a batch of 2 rows of 4 steps: lengths out of [1, 4], of the wrong
    shape or not integers each raise, naming what is wrong."""
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        run(torch.tensor([5, 1]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        run(torch.tensor([4]))
    with pytest.raises(TypeError, match="integer"):
        run(torch.tensor([4.0, 1.0]))


def test_bad_lengths_rejected():
    x, h = torch.randn(4, 2, 3), torch.zeros(1, 2, 5)
    ws = [list(fastgru.GRU(3, 5).parameters())]
    assert_bad_lengths_rejected(lambda lengths: fastgru.functional.gru(x, h, ws, 1, lengths=lengths))


def test_unknown_strategy_rejected():
    with pytest.raises(ValueError, match="strategy"):
        fastgru.GRU(3, 5, strategy="magic")
