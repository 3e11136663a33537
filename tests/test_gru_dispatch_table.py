"""The measured dispatch table: its choice is taken, a shape without an entry falls back to the
rules, ``cudnn`` (PyTorch's own GRU operator) runs only where it means exactly what the kernels
mean, and ``fastgru.explain`` says which and why.

The table is a real device's measurement, so a test pretends to be on one: the planner's tests
on a pretended 132-SM sm_90 (as tests/test_gru_plan.py), the functional ones under the
interpreter with the device's arch pretended (the kernels and PyTorch's CPU operator run)."""

from types import SimpleNamespace

import pytest
import torch

import fastgru
from fastgru import backend
from fastgru.functional import dispatch
from fastgru.functional import recurrent as functional_recurrent
from fastgru.launchers import plan as planner
from fastgru.launchers import plan_table
from fastgru.launchers.launch import Resources


def entry(strategy, dtype="bf16", mode="inference", h=(182, 362), b=(1, 2), tf32=None, reset_after=True, D=1):
    return {"arch": "sm_90", "dtype": dtype, "tf32": tf32, "mode": mode, "reset_after": reset_after,
            "directions": D, "h": list(h), "b": list(b), "strategy": strategy,
            "measured": {"H": 256, "B": 1, "T": 512, "device": "test GPU", "ratio": {"persistent": 0.5, "rows": 0.8},
                         "baseline": "graphed", "sources": []}}


@pytest.fixture
def table(monkeypatch):
    """Install a table (a list of entries) and pretend the device is an sm_90."""
    def install(*entries):
        plan_table._lookup_shipped.cache_clear()
        monkeypatch.setattr(plan_table, "load", lambda path=None: {"format": 1, "entries": list(entries)})
        monkeypatch.setattr(plan_table, "device_arch", lambda device: "sm_90")
    yield install
    plan_table._lookup_shipped.cache_clear()


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))


def fits(plan):
    return Resources(128, 3 * plan.block_h * plan.block_k * 2, plan.num_warps, 0)


def test_the_tables_choice_is_taken(h100, table):
    """The rules would run bf16 at H = 256 persistent; the table says rows, and rows runs."""
    assert planner.plan_gru(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits).strategy == "persistent"
    table(entry("rows"))
    plan, why = planner.plan_with_reason(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits)
    assert plan.strategy == "rows" and why.startswith("table entry H 182-362, B 1-2 -> rows")


@pytest.mark.parametrize("B,H,mode,dtype", [(3, 256, "inference", torch.bfloat16), (1, 512, "inference", torch.bfloat16),
                                            (1, 256, "training", torch.bfloat16), (1, 256, "inference", torch.float16)])
def test_without_an_entry_the_rules_decide(h100, table, B, H, mode, dtype):
    table(entry("rows"))
    plan, why = planner.plan_with_reason(B, H, 1, "cuda", None, dtype, resources=fits, mode=mode)
    assert plan.strategy == "persistent" and why.startswith("rule:")


def test_fp32_entries_follow_the_tf32_flag(h100, table, monkeypatch):
    table(entry("stepwise", dtype="fp32", tf32=True))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert planner.plan_gru(1, 256, 1, "cuda", None, torch.float32, resources=fits).strategy == "stepwise"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert planner.plan_gru(1, 256, 1, "cuda", None, torch.float32, resources=fits).strategy == "rows"


def test_a_table_choice_that_cannot_run_falls_back_to_the_rules(h100, table):
    """persistent that does not fit here, and cudnn reaching the planner (the functional layer
    turned it down): the rules plan, and the reason says both."""
    table(entry("persistent", dtype="bf16", h=(725, 1448)), entry("cudnn", dtype="bf16"))
    spills = lambda p: Resources(255, 1000, p.num_warps, 64)  # noqa: E731
    plan, why = planner.plan_with_reason(1, 1024, 1, "cuda", None, torch.bfloat16, resources=spills)
    assert plan.strategy == "stepwise" and "-> persistent" in why and "not available here; rule: stepwise" in why
    plan, why = planner.plan_with_reason(1, 256, 1, "cuda", None, torch.bfloat16, resources=fits)
    assert plan.strategy == "persistent" and "-> cudnn" in why and "rule: bf16/fp16 run persistent" in why


def test_a_forced_strategy_ignores_the_table(h100, table):
    table(entry("rows"))
    plan, why = planner.plan_with_reason(1, 256, 1, "cuda", "stepwise", torch.bfloat16, resources=fits)
    assert (plan.strategy, why) == ("stepwise", "forced")


def test_no_table_off_a_real_gpu():
    assert plan_table.key_for("cpu", torch.bfloat16, "inference", True, 1, 256, 1) is None
    assert plan_table.device_arch(torch.empty(0)) is None


# --- the functional layer: cudnn where the table says so, never where it means something else ---

def gru_pair(H=16, I=8, reset_after=True, **kw):
    torch.manual_seed(0)
    ref = torch.nn.GRU(I, H, **kw)
    mod = fastgru.GRU(I, H, reset_after=reset_after, **kw)
    mod.load_state_dict(ref.state_dict())
    return ref, mod


@pytest.fixture
def interpret_cudnn_table(table):
    """An sm_90 table whose every fp32 shape goes to cudnn, under the interpreter backend."""
    table(*(entry("cudnn", dtype="fp32", tf32=t, mode=m, h=(1, 4096), b=(1, 4096)) for t in (True, False)
            for m in ("inference", "training")))
    with backend.using("interpret"):
        yield


@pytest.fixture
def torch_gru_calls(monkeypatch):
    """Calls of PyTorch's operator: padded (with or without lengths) and packed."""
    calls = []
    for owner, name in ((functional_recurrent, "_torch_gru"), (fastgru.functional, "pytorch_packed_gru")):
        def spy(*args, _real=getattr(owner, name), _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(owner, name, spy)
    return calls


def test_the_tables_cudnn_runs_pytorchs_operator(interpret_cudnn_table, torch_gru_calls):
    ref, mod = gru_pair()
    x = torch.randn(5, 3, 8, requires_grad=True)
    out, h_n = mod(x)
    assert torch_gru_calls == ["_torch_gru"]
    want, want_h = ref(x)
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    torch.testing.assert_close(h_n, want_h, rtol=0, atol=0)
    out.sum().backward()  # PyTorch's own autograd through its operator, on the module's parameters
    assert mod.weight_hh_l0.grad is not None
    assert "-> cudnn" in str(fastgru.explain(mod, x))


def test_packed_input_goes_to_cudnn_as_pytorch_packs_it(interpret_cudnn_table, torch_gru_calls):
    ref, mod = gru_pair(num_layers=2)
    x = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 3, 8), torch.tensor([2, 5, 4]), enforce_sorted=False)
    h0 = torch.randn(2, 3, 16)
    out, h_n = mod(x, h0)
    want, want_h = ref(x, h0)
    assert torch_gru_calls == ["pytorch_packed_gru"]  # on the packed data, as nn.GRU: no padding
    torch.testing.assert_close(out.data, want.data, rtol=0, atol=0)
    torch.testing.assert_close(h_n, want_h, rtol=0, atol=0)


@pytest.mark.parametrize("case", ["reset_before", "eval_with_grad", "deterministic", "compiling"])
def test_cudnn_is_never_chosen_where_its_semantics_differ(interpret_cudnn_table, torch_gru_calls, monkeypatch, case):
    """The table says cudnn for every shape; each of these calls runs the kernels instead, and a
    forced strategy='cudnn' raises, naming why."""
    ref, mod = gru_pair(reset_after=False) if case == "reset_before" else gru_pair()
    x = torch.randn(4, 2, 8, requires_grad=True)
    if case == "eval_with_grad":
        mod.eval()
    if case == "deterministic":
        monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    if case == "compiling":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    explanation = fastgru.explain(mod, x)
    assert explanation.strategy == "rows" and explanation.backend == "interpret"
    out, _ = mod(x)
    assert torch_gru_calls == []
    mod.strategy = "cudnn"
    with pytest.raises(ValueError, match="strategy='cudnn' cannot run this call"):
        mod(x)


def test_lengths_on_the_gpu_turn_cudnn_down():
    why = dispatch.cudnn_refusal(torch.device("cpu"), True, False, True, torch.empty(3, device="meta"))
    assert why is not None and "lengths is on the GPU" in why
    assert dispatch.cudnn_refusal(torch.device("cpu"), True, False, True, torch.tensor([3, 2])) is None


def assert_explains_the_cpu_backend(mod, x, words):
    """fastgru.explain on the CPU backend: PyTorch's operator (``words`` in the line), the mode
    from whether a gradient can flow. Shared with the LSTM's test."""
    with backend.using("torch"):
        e = fastgru.explain(mod, x)
        assert (e.backend, e.strategy, e.mode) == ("torch", None, "training") and words in str(e)
        with torch.no_grad():
            assert fastgru.explain(mod, x).mode == "inference"


def test_explain_says_forced_rule_and_backend():
    _, mod = gru_pair()
    x = torch.randn(4, 2, 8)
    assert_explains_the_cpu_backend(mod, x, "PyTorch's own GRU operator")
    with backend.using("interpret"):
        mod.strategy = "stepwise"
        e = fastgru.explain(mod, x[:, :1])
        assert (e.strategy, e.reason, e.plan.strategy) == ("stepwise", "forced", "stepwise")
    with pytest.raises(TypeError, match="module must be a fastgru.GRU or fastgru.LSTM"):
        fastgru.explain(torch.nn.GRU(8, 16), x)
    with pytest.raises(ValueError, match="strategy must be one of"):
        mod.strategy = "fastest"
        fastgru.explain(mod, x)


def test_the_shipped_table_is_well_formed():
    """Every entry names a known strategy and entries of one key never overlap (a shape has one
    answer)."""
    doc = plan_table.load()
    assert doc["format"] == 1 and doc["entries"], "fastgru/launchers/plan_table.json is missing or empty"
    seen = {}
    for e in doc["entries"]:
        assert e["strategy"] in plan_table.TABLE_STRATEGIES
        assert e["h"][0] <= e["h"][1] and e["b"][0] <= e["b"][1]
        k = (e["arch"], e["dtype"], e["tf32"], e["mode"], e["reset_after"], e["directions"])
        for other in seen.get(k, []):
            assert e["h"][1] < other["h"][0] or other["h"][1] < e["h"][0] or \
                e["b"][1] < other["b"][0] or other["b"][1] < e["b"][0], (e, other)
        seen.setdefault(k, []).append(e)
