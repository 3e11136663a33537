"""convert() and subclasses of torch.nn's recurrent modules, written the way libraries write them:
a forward that packs an unsorted batch and calls super(), one that handles zero-length rows,
one that overrides forward completely, one that calls nn.GRU.forward by name. A subclass whose
forward reaches nn's through super() keeps its behaviour and computes in fastgru; any other is
left with a warning naming it (or a RuntimeError when strict): never a silent skip."""

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastgru
import fastgru.functional as F_
from fastgru import backend
from fastgru.nn.subclasses import RoutedRecurrence
from fastgru.testing import check_close

RECURRENT = (nn.GRU, nn.GRUCell, nn.LSTM, nn.LSTMCell)


class PackingGRU(nn.GRU):
    """A forecasting library's pattern: pack an unsorted padded batch, run nn.GRU on it through
    super(), pad again; rows of length zero run one step and are zeroed afterwards."""

    def forward(self, x, hx=None, lengths=None):
        if lengths is None:
            return super().forward(x, hx)
        empty = lengths == 0
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=self.batch_first,
                                      enforce_sorted=False)
        out, h = super().forward(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=self.batch_first, total_length=x.shape[1])
        return out.masked_fill(empty[:, None, None], 0.0), h.masked_fill(empty[None, :, None], 0.0)


class ZeroLengthGRU(nn.GRU):
    """Rows of length zero get the initial state and no output; the others run padded through
    super(*).forward (the explicit two-argument form)."""

    def forward(self, x, lengths):
        keep = lengths > 0
        out, h = super(ZeroLengthGRU, self).forward(x[keep])
        full_out = x.new_zeros(x.shape[0], x.shape[1], out.shape[-1])
        full_h = x.new_zeros(h.shape[0], x.shape[0], self.hidden_size)
        full_out[keep], full_h[:, keep] = out, h
        return full_out, full_h


class LoggingGRU(PackingGRU):
    """A subclass of a subclass, with no forward of its own."""

    extra = "kept"


class OwnLoopGRU(nn.GRU):
    """Overrides forward completely: its own loop over nn.GRU's parameters."""

    def forward(self, x, hx=None):
        h = x.new_zeros(x.shape[0], self.hidden_size) if hx is None else hx[0]
        outs = []
        for t in range(x.shape[1]):
            h = torch.ops.aten.gru_cell(x[:, t], h, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0,
                                        self.bias_hh_l0)
            outs.append(h)
        return torch.stack(outs, 1), h[None]


class ByNameGRU(nn.GRU):
    def forward(self, x, hx=None):
        return nn.GRU.forward(self, x, hx)


class PackingLSTM(nn.LSTM):
    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = super().forward(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], state


class ScaledGRUCell(nn.GRUCell):
    def forward(self, x, hx=None):
        return 0.5 * super().forward(x, hx)


class ClampedLSTMCell(nn.LSTMCell):
    def forward(self, x, hx=None):
        h, c = super().forward(x, hx)
        return h, c.clamp(-3, 3)


def _sourceless_gru():
    namespace = {"nn": nn}
    exec("class NoSourceGRU(nn.GRU):\n    def forward(self, x, hx=None):\n        return super().forward(x, hx)\n",
         namespace)
    return namespace["NoSourceGRU"]


class Model(nn.Module):
    """One of each, plus exact torch classes and a module shared by two paths."""

    def __init__(self):
        super().__init__()
        self.packing = PackingGRU(4, 5, batch_first=True)
        self.zero = ZeroLengthGRU(4, 5, batch_first=True, bidirectional=True)
        self.logging = LoggingGRU(4, 5, batch_first=True)
        self.own = OwnLoopGRU(4, 5, batch_first=True)
        self.by_name = ByNameGRU(4, 5, batch_first=True)
        self.lstm = PackingLSTM(4, 6, batch_first=True, proj_size=3)
        self.cell = ScaledGRUCell(4, 5)
        self.lstm_cell = ClampedLSTMCell(4, 5)
        self.plain = nn.GRU(4, 5)
        self.nosource = _sourceless_gru()(4, 5)
        self.shared = nn.Sequential(nn.GRU(4, 3))
        self.alias = self.shared[0]


ROUTED = {"packing", "zero", "logging", "lstm", "cell", "lstm_cell"}
WARNED = {"own": "does not call super().forward", "by_name": "by name", "nosource": "cannot be read"}


def _convert(model, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fastgru.convert(model, **kwargs)
    return out, [w for w in caught if issubclass(w.category, fastgru.nn.ConvertWarning)]


def _inputs():
    x = torch.randn(3, 6, 4)
    return x, torch.tensor([6, 0, 4]), torch.tensor([2, 6, 5])


def _run(model, x, zero_lengths, lengths):
    state = (x[:, 1, :4].flip(1)[:, [0, 1, 2, 3, 0]], x[:, 2, :4][:, [3, 2, 1, 0, 1]])  # (B, 5) each
    return {
        "packing": model.packing(x, lengths=zero_lengths),
        "zero": model.zero(x, zero_lengths),
        "logging": model.logging(x, lengths=lengths),
        "lstm": model.lstm(x, lengths),
        "cell": model.cell(x[:, 0]),
        "lstm_cell": model.lstm_cell(x[:, 0], state),
    }


def _flat(results):
    out = []
    for value in results.values():
        while isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], tuple):
            value = (value[0], *value[1])
        out.extend(value if isinstance(value, tuple) else (value,))
    return out


def test_every_recurrent_module_is_converted_or_named():
    model = Model()
    fast, caught = _convert(model)
    messages = [str(w.message) for w in caught]
    for path, original in model.named_modules(remove_duplicate=False):
        if not isinstance(original, RECURRENT):
            continue
        now = fast.get_submodule(path)
        converted = isinstance(now, (RoutedRecurrence, fastgru.GRU, fastgru.GRUCell, fastgru.LSTM, fastgru.LSTMCell))
        named = [m for m in messages if m.startswith(f"convert: left {path} (")]
        assert converted != bool(named), f"{path}: converted={converted}, warnings={named}"
    assert {m.split()[2] for m in messages} == set(WARNED)
    for path, reason in WARNED.items():
        assert reason in next(m for m in messages if m.startswith(f"convert: left {path} ("))
        assert type(fast.get_submodule(path)) is type(model.get_submodule(path))
    for path in ROUTED:
        assert type(fast.get_submodule(path)).__mro__[1] is type(model.get_submodule(path))
    assert isinstance(fast.plain, fastgru.GRU)
    assert fast.alias is fast.shared[0] and isinstance(fast.alias, fastgru.GRU), "a shared module stays shared"
    assert fast.logging.extra == "kept"


def test_routed_subclasses_keep_their_behaviour_exactly_on_pytorch_ops():
    """On the CPU backend fastgru runs PyTorch's own operators: bitwise nn's results."""
    model = Model()
    x, zero_lengths, lengths = _inputs()
    fast, _ = _convert(model)
    want = _flat(_run(model, x, zero_lengths, lengths))
    with backend.using("torch"):
        got = _flat(_run(fast, x, zero_lengths, lengths))
    assert len(want) == len(got) == 12
    for w, g in zip(want, got):
        assert torch.equal(w, g)
    assert list(fast.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, fast.state_dict()[key])


def test_routed_subclasses_compute_in_fastgru_kernels(monkeypatch):
    """Under the interpreter the recurrence runs fastgru's kernels (each family's function is
    called), and outputs and gradients keep the numerics contract against float64."""
    model = Model()
    x, zero_lengths, lengths = _inputs()
    fast, _ = _convert(model)
    calls = []
    for name in ("gru", "lstm", "gru_cell", "lstm_cell"):
        function = getattr(F_, name)
        monkeypatch.setattr(F_, name, lambda *a, _f=function, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    ref64 = copy.deepcopy(model).double()
    with backend.using("interpret"):
        got = _run(fast, x, zero_lengths, lengths)
    assert sorted(set(calls)) == ["gru", "gru_cell", "lstm", "lstm_cell"]
    want = _run(ref64, x.double(), zero_lengths, lengths)
    baseline = _run(model, x, zero_lengths, lengths)
    for name in want:
        for g, w, b in zip(_flat({name: got[name]}), _flat({name: want[name]}), _flat({name: baseline[name]})):
            check_close(g, w, torch.float32, baseline=b, name=name)
    loss64 = ref64.packing(x.double(), lengths=zero_lengths)[0].square().sum()
    loss64.backward()
    with backend.using("interpret"):
        fast.packing(x, lengths=zero_lengths)[0].square().sum().backward()
    for name, p in fast.packing.named_parameters():
        check_close(p.grad, getattr(ref64.packing, name).grad, torch.float32, name=f"d{name}")


def test_strict_raises_naming_every_module_before_anything_changes():
    model = Model()
    with pytest.raises(RuntimeError, match="strict=True") as info:
        fastgru.convert(model, inplace=True, strict=True)
    for path in WARNED:
        assert f"{path} (" in str(info.value)
    assert type(model.packing) is PackingGRU and type(model.plain) is nn.GRU, "nothing converted"
    with pytest.raises(TypeError, match="strict must be a bool"):
        fastgru.convert(model, strict="yes")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fastgru.convert([model])


def test_to_torch_restores_the_original_classes_and_parameters():
    model = Model()
    types = {path: type(m) for path, m in model.named_modules(remove_duplicate=False)}
    params = dict(model.named_parameters(remove_duplicate=False))
    fast, _ = _convert(model, inplace=True)
    assert fast is model
    again, caught = _convert(fast)
    assert type(again.packing).__mro__.count(RoutedRecurrence) == 1, "converting twice routes once"
    back, caught = _convert(fast, inplace=True, to="torch")
    assert not caught, "nothing is left behind on the way back"
    for path, kind in types.items():
        assert type(back.get_submodule(path)) is kind, path
    for name, p in back.named_parameters(remove_duplicate=False):
        assert p is params[name], f"{name}: the same Parameter object"


def test_routed_modules_pickle_and_deepcopy():
    fast, _ = _convert(Model())
    del fast.nosource  # a class made by exec() cannot be pickled by anyone
    x, zero_lengths, lengths = _inputs()
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert type(clone.packing) is type(fast.packing) and isinstance(clone.packing, PackingGRU)
        with backend.using("torch"):
            for a, b in zip(_flat(_run(fast, x, zero_lengths, lengths)), _flat(_run(clone, x, zero_lengths, lengths))):
                assert torch.equal(a, b)


def test_a_subclass_of_a_fastgru_module_is_named_on_the_way_to_torch():
    class MyGRU(fastgru.GRU):
        pass

    model = nn.Sequential(MyGRU(3, 4), fastgru.GRU(3, 4))
    back, caught = _convert(model, to="torch")
    assert type(back[0]) is MyGRU and type(back[1]) is nn.GRU
    assert len(caught) == 1 and "convert: left 0 (" in str(caught[0].message)
    with pytest.raises(RuntimeError, match="no torch.nn class"):
        fastgru.convert(model, to="torch", strict=True)


def test_the_model_itself_may_be_a_subclass():
    model = PackingGRU(4, 5, batch_first=True)
    fast, caught = _convert(model)
    assert not caught and isinstance(fast, RoutedRecurrence) and isinstance(fast, PackingGRU)
    assert type(model) is PackingGRU, "inplace=False leaves the input as it was"
    assert type(fastgru.convert(fast, to="torch")) is PackingGRU
    with pytest.warns(fastgru.nn.ConvertWarning, match=r"<the model itself> \(OwnLoopGRU\)"):
        fastgru.convert(OwnLoopGRU(4, 5))
