"""Bad inputs to the attention functions and modules raise a clear error naming the argument,
before any kernel runs."""

import pytest
import torch

import fastgru
import fastgru.launchers.attention as AA

N, Tq, T, DQ, DK, A, DV = 2, 3, 5, 4, 6, 7, 3


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch):
    """Any kernel launch fails the test: validation must come first."""

    def launch(*args, **kwargs):
        raise AssertionError("a kernel ran before the inputs were checked")

    monkeypatch.setattr(AA, "_launch", launch)


def good():
    return {"query": torch.randn(N, Tq, DQ), "keys": torch.randn(N, T, DK), "values": torch.randn(N, T, DV)}


ADD = fastgru.AdditiveAttention(DQ, DK, A)
DOT = fastgru.DotAttention(DQ, DK, method="general")
POOL = fastgru.AttentionPooling(DK, A)

BAD = [
    ("query-batch", dict(query=torch.randn(N + 1, Tq, DQ)), ValueError, "batch size"),
    ("query-features", dict(query=torch.randn(N, Tq, DQ + 1)), ValueError, "query has 5 features, expected 4"),
    ("query-4d", dict(query=torch.randn(N, Tq, 1, DQ)), ValueError, "query must be"),
    ("query-int", dict(query=torch.ones(N, Tq, DQ, dtype=torch.long)), TypeError, "floating dtype"),
    ("query-list", dict(query=[[1.0]]), TypeError, "query must be a torch.Tensor"),
    ("keys-2d", dict(keys=torch.randn(N, DK)), ValueError, "keys must be"),
    ("keys-features", dict(keys=torch.randn(N, T, DK + 2)), ValueError, "keys have 8 features, expected 6"),
    ("values-steps", dict(values=torch.randn(N, T + 1, DV)), ValueError, "values must have batch size"),
    ("values-dtype", dict(values=torch.randn(N, T, DV, dtype=torch.float64)), TypeError, "values has dtype"),
    ("query-dtype", dict(query=torch.randn(N, Tq, DQ, dtype=torch.float16)), TypeError, "query has dtype"),
    ("empty-keys", dict(keys=torch.randn(N, 0, DK), values=torch.randn(N, 0, DV)), ValueError, "must not be empty"),
    ("lengths-shape", dict(lengths=torch.tensor([1, 2, 3])), ValueError, "lengths must have shape (2,)"),
    ("lengths-float", dict(lengths=torch.tensor([1.0, 2.0])), TypeError, "integer tensor"),
    ("lengths-negative", dict(lengths=torch.tensor([-1, 2])), ValueError, "lengths must lie in [0, 5]"),
    ("lengths-too-long", dict(lengths=torch.tensor([6, 2])), ValueError, "lengths must lie in [0, 5]"),
    ("mask-shape", dict(key_padding_mask=torch.zeros(N, T + 1, dtype=torch.bool)), ValueError, "key_padding_mask must have shape (2, 5)"),
    ("mask-dtype", dict(key_padding_mask=torch.zeros(N, T)), TypeError, "torch.bool"),
]


@pytest.mark.parametrize("module", [ADD, DOT], ids=["additive", "general"])
@pytest.mark.parametrize("change, error, message", [pytest.param(*b[1:], id=b[0]) for b in BAD])
def test_bad_inputs_raise_before_any_kernel(module, change, error, message):
    args = {**good(), **change}
    with pytest.raises(error, match=_re(message)):
        module(**args)


@pytest.mark.parametrize(
    "h, kwargs, error, message",
    [
        pytest.param(torch.randn(N, T, DK + 1), {}, ValueError, "weight must have shape", id="features"),
        pytest.param(torch.randn(N, DK), {}, ValueError, "h must be", id="2d"),
        pytest.param(torch.randn(N, T, DK).double(), {}, TypeError, "dtype", id="dtype"),
        pytest.param(torch.randn(N, T, DK), {"lengths": torch.tensor([0, 9])}, ValueError, "lengths must lie", id="lengths"),
        pytest.param(torch.randn(N, T, DK), {"key_padding_mask": torch.zeros(N, T, dtype=torch.uint8)}, TypeError,
                     "torch.bool", id="mask-dtype"),
    ],
)
def test_pooling_bad_inputs(h, kwargs, error, message):
    with pytest.raises(error, match=_re(message)):
        POOL(h, **kwargs)


def test_module_construction_errors():
    with pytest.raises(ValueError, match="method must be"):
        fastgru.DotAttention(4, method="concat")
    with pytest.raises(ValueError, match="key_size == query_size"):
        fastgru.DotAttention(4, 5, method="dot")


def test_gru_attention_bad_lengths():
    model = fastgru.GRUAttention(3, 4, 2)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(torch.randn(2, 5, 3), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        model(torch.randn(5, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch():
    args = good()
    args["values"] = args["values"].cuda()
    with pytest.raises(RuntimeError, match="values is on"):
        ADD(**args)


def _re(message):
    import re

    return re.escape(message)
