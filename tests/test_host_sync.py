"""No call path of fastgru's modules synchronises the host: what a CUDA graph
capture needs. Every module runs forward and backward under tests/host_sync.py's guard, which
fails on any host read of device data, any copy between host and device, and any host tensor
handed to a kernel; the guard also makes fastgru believe a capture is in progress, so the value
checks take their capture form (device-side assertions).

Without CUDA the launches are planned as on an H100 (persistent grids included) and recorded,
not run: each case costs milliseconds. With CUDA the same cases run for real, after a warm-up
call (compiling and autotuning synchronise), with torch.cuda.set_sync_debug_mode("error") on
as well. tests/test_gpu_capture.py captures and replays the same modules on a GPU.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastgru
import fastgru.functional as AF
from fastgru import backend
from fastgru.functional.attention import _masks as attention_masks
from fastgru.functional.checks import check_lengths
from fastgru.functional.recurrent import check_gru_inputs
from host_sync import HostSyncError, no_host_sync

from conftest import DEVICE

SIMULATED = DEVICE == "cpu"
N, T, I, H = 3, 5, 4, 8


def _r(*shape, grad=True):
    return torch.randn(*shape, device=DEVICE, requires_grad=grad)


def _lengths(*values):
    return torch.tensor(values, device=DEVICE)


def _guarded(run, host=()):
    """``run()`` (forward and backward) under the guard; with real CUDA tensors after one
    warm-up call outside it. Returns the kernel launches the guard saw."""
    if not SIMULATED:
        run()
    with no_host_sync(host=host) as guard:
        run()
    return [name for name, _ in guard.launches]


def _backward(*outs):
    sum(o.float().sum() for o in outs if o is not None).backward()


def _assert_forced_plan_ran(launched, strategy, family):
    """In the simulation, the GPU plan of a forced strategy ran: its forward kernel was launched."""
    if SIMULATED and strategy is not None:
        kernel = {"rows": "_rows_", "stepwise": "_step_", "persistent": "_persistent_"}[strategy]
        assert any(name.startswith(family + "_fwd") and kernel in name for name in launched), launched


# ------------------------------------------------------------------------------ the guard itself


@pytest.mark.parametrize("read", ["item", "int", "bool", "tolist", "cpu", "numpy", "nonzero", "mask", "equal"])
def test_the_guard_catches_host_reads(read):
    x = torch.randn(4, device=DEVICE)
    reads = {
        "item": lambda: x.sum().item(), "int": lambda: int(x[0]), "bool": lambda: bool(x[0] > 0),
        "tolist": lambda: x.tolist(), "cpu": lambda: x.cpu(), "numpy": lambda: x.cpu().numpy(),
        "nonzero": lambda: x.nonzero(), "mask": lambda: x[x > 0], "equal": lambda: torch.equal(x, x),
    }
    with pytest.raises((HostSyncError, RuntimeError)), no_host_sync():
        reads[read]()


@pytest.mark.skipif(not SIMULATED, reason="host tensors are tracked only in the CPU simulation")
def test_the_guard_tracks_host_tensors():
    host, dev = torch.arange(3), torch.ones(3)
    with no_host_sync(host=[host]):
        assert host.tolist() == [0, 1, 2]  # reading host data is no synchronisation
        doubled = host * 2  # computed from host tensors alone: a host tensor
        assert int(doubled[1]) == 2
        with pytest.raises(HostSyncError, match="mixes host tensors"):
            dev + host
    with no_host_sync(host=[host]), pytest.raises(HostSyncError, match="host tensor"):
        AF.dot_attention(torch.randn(2, 1, 4), torch.randn(2, 3, 4), need_weights=True, lengths=host[:2] + 1)


def test_eager_value_checks_are_unchanged():
    """Outside a capture check_lengths reads the values and raises the eager ValueError."""
    expected = r"lengths must lie in \[1, 5\] \(the sequence length\), got values in \[0, 5\]"
    with pytest.raises(ValueError, match=expected):
        check_lengths(torch.tensor([5, 0]), 2, 1, 5, "the sequence length")
    gru = fastgru.GRU(I, H).to(DEVICE)
    with pytest.raises(ValueError, match="lengths must lie in"):
        gru(torch.randn(T, 2, I, device=DEVICE), lengths=torch.tensor([T + 1, 1]))


def test_value_checks_under_capture_are_device_assertions(monkeypatch):
    """Under capture the range check becomes torch._assert_async (checked when the graph runs),
    the lengths on the host raise a RuntimeError saying to pass them on the device."""
    monkeypatch.setattr(backend, "capturing", lambda: True)
    seen = []
    real = torch._assert_async
    monkeypatch.setattr(torch, "_assert_async", lambda cond, msg: (seen.append(msg), real(cond, msg)))
    out = check_lengths(torch.tensor([5, 2]), 2, 1, 5, "the sequence length")
    assert out.dtype == torch.int64 and seen == ["lengths must lie in [1, 5] (the sequence length)"]
    expected = r"lengths is on cpu while a CUDA graph is being captured.*on the inputs' device \(cuda:0\)"
    with pytest.raises(RuntimeError, match=expected):
        check_lengths(torch.tensor([5, 2]), 2, 1, 5, "the sequence length", torch.device("cuda", 0))


@pytest.mark.parametrize("family", ["attention", "gru"])
def test_host_lengths_under_capture_raise_a_clear_error(family, monkeypatch):
    """Lengths on the host with inputs elsewhere (here: the meta device stands for a GPU) while
    capturing: the check names the fix (gru: functional/recurrent.py passes the inputs' device to
    check_lengths)."""
    monkeypatch.setattr(backend, "capturing", lambda: True)
    lengths = torch.tensor([2, 1])
    with pytest.raises(RuntimeError, match="Pass lengths as an integer tensor on the inputs' device"):
        if family == "attention":
            attention_masks(lengths, None, 2, 3, torch.device("meta"))
        else:
            gru = fastgru.GRU(I, H, device="meta")
            check_gru_inputs(torch.empty(T, 2, I, device="meta"), torch.empty(1, 2, H, device="meta"),
                             gru._layer_weights(), 1, False, False, lengths)


# ------------------------------------------------------------------------------ the GRU family


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent", None])
def test_gru(strategy, reset_after):
    gru = fastgru.GRU(I, H, num_layers=2, bidirectional=True, dropout=0.5, strategy=strategy,
                      reset_after=reset_after).to(DEVICE)
    x, h0, lengths = _r(T, N, I), _r(4, N, H), _lengths(T, 2, 4)

    def run():
        out, h_n = gru(x, h0, lengths=lengths)
        _backward(out, h_n)

    _assert_forced_plan_ran(_guarded(run), strategy, "gru")


def test_gru_batch_first_without_lengths_and_unbatched():
    gru = fastgru.GRU(I, H, batch_first=True).to(DEVICE)
    x, x1 = _r(N, T, I), _r(T, I)

    def run():
        _backward(*gru(x), *gru(x1))

    _guarded(run)


def test_gru_packed_sequence():
    """A PackedSequence (enforce_sorted=False): its batch_sizes stay on the host, as PyTorch keeps
    them; nothing else may (torch's pad_packed_sequence copies unsorted_indices to the host, so
    nn/recurrent.py must not rely on it)."""
    gru = fastgru.GRU(I, H, bidirectional=True).to(DEVICE)
    x = _r(T, N, I)
    packed = pack_padded_sequence(x, torch.tensor([2, T, 3]), enforce_sorted=False)

    def run():
        out, h_n = gru(packed)
        _backward(out.data, h_n)

    _guarded(run, host=[packed.batch_sizes])


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_cell(reset_after):
    cell = fastgru.GRUCell(I, H, reset_after=reset_after).to(DEVICE)
    x, h = _r(N, I), _r(N, H)

    def run():
        _backward(cell(x, cell(x, h)))

    _guarded(run)


# ------------------------------------------------------------------------------ the LSTM family


@pytest.mark.parametrize("proj", [0, 3])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent", None])
def test_lstm(strategy, proj):
    lstm = fastgru.LSTM(I, H, num_layers=2, bidirectional=True, dropout=0.5, proj_size=proj,
                        strategy=strategy).to(DEVICE)
    x, lengths = _r(T, N, I), _lengths(T, 2, 4)
    hx = (_r(4, N, proj or H), _r(4, N, H))

    def run():
        out, (h_n, c_n) = lstm(x, hx, lengths=lengths)
        _backward(out, h_n, c_n)

    _assert_forced_plan_ran(_guarded(run), strategy, "lstm")


def test_lstm_batch_first_without_lengths_and_unbatched():
    lstm = fastgru.LSTM(I, H, batch_first=True, proj_size=3).to(DEVICE)
    x, x1 = _r(N, T, I), _r(T, I)

    def run():
        out, (h_n, c_n) = lstm(x)
        out1, (h1, c1) = lstm(x1)
        _backward(out, h_n, c_n, out1, h1, c1)

    _guarded(run)


def test_lstm_packed_sequence():
    """A PackedSequence (enforce_sorted=False): only its batch_sizes stay on the host."""
    lstm = fastgru.LSTM(I, H, bidirectional=True).to(DEVICE)
    packed = pack_padded_sequence(_r(T, N, I), torch.tensor([2, T, 3]), enforce_sorted=False)

    def run():
        out, (h_n, c_n) = lstm(packed)
        _backward(out.data, h_n, c_n)

    _guarded(run, host=[packed.batch_sizes])


def test_lstm_cell():
    cell = fastgru.LSTMCell(I, H).to(DEVICE)
    x, h, c = _r(N, I), _r(N, H), _r(N, H)

    def run():
        _backward(*cell(x, cell(x, (h, c))))

    _guarded(run)


# ------------------------------------------------------------------------------ attention


def _masks(masking):
    lengths = _lengths(T, 2, 0) if masking in ("lengths", "both") else None
    mask = None
    if masking in ("mask", "both"):
        mask = torch.zeros(N, T, dtype=torch.bool, device=DEVICE)
        mask[1, 3:] = True
    return dict(lengths=lengths, key_padding_mask=mask)


@pytest.mark.parametrize("hops", [1, 3])
@pytest.mark.parametrize("masking", ["none", "lengths", "both"])
def test_attention_pooling(hops, masking):
    pool = fastgru.AttentionPooling(I, 6, num_heads=hops, dropout=0.3).to(DEVICE).train()
    h = _r(N, T, I)

    def run():
        pooled, weights = pool(h, need_weights=True, **_masks(masking))
        _backward(pooled, weights)

    _guarded(run)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("masking", ["lengths", "mask"])
def test_additive_attention(heads, masking):
    att = fastgru.AdditiveAttention(I, 6, 8, num_heads=heads, dropout=0.3).to(DEVICE).train()
    q, k, v = _r(N, 2, I), _r(N, T, 6), _r(N, T, 4)

    def run():
        ctx, w = att(q, k, v, need_weights=True, average_attn_weights=heads == 1, **_masks(masking))
        ctx1, _ = att(q[:, 0], k, v, **_masks(masking))  # a 2-D query
        _backward(ctx, w, ctx1)

    _guarded(run)


@pytest.mark.parametrize("method", ["dot", "general", "projected"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_dot_attention(method, need_weights):
    att = fastgru.DotAttention(8, 6 if method != "dot" else 8, method=method, num_heads=2, dropout=0.3)
    att = att.to(DEVICE).train()
    q, k = _r(N, 2, 8), _r(N, T, 6 if method != "dot" else 8)

    def run():
        ctx, w = att(q, k, need_weights=need_weights, **_masks("both"))
        _backward(ctx, w)

    _guarded(run)


def test_gru_attention():
    model = fastgru.GRUAttention(I, H, 3, num_layers=2, bidirectional=True, dropout=0.2).to(DEVICE).train()
    x, lengths = _r(N, T, I), _lengths(T, 1, 3)

    def run():
        _backward(*model(x, lengths=lengths))

    _guarded(run)


# ------------------------------------------------------------------------------ the decoder


_DECODERS = [("additive", False, 1), ("dot", False, 1), ("general", True, 1), ("additive", False, 2),
             ("general", False, 2)]


def _key_masks():
    m = _masks("both")
    return dict(key_lengths=m["lengths"], key_padding_mask=m["key_padding_mask"])


@pytest.mark.parametrize("attention,input_feeding,layers", _DECODERS)
def test_decoder_teacher_forced(attention, input_feeding, layers):
    K = H if attention == "dot" else 6
    dec = fastgru.AttentionGRUDecoder(I, H, K, attention=attention, input_feeding=input_feeding,
                                      num_layers=layers).to(DEVICE)
    x, keys = _r(N, 4, I), _r(N, T, K)

    def run():
        out, ctx, w, h_n = dec(x, keys, need_weights=True, **_key_masks())
        _backward(out, ctx, w, h_n)

    _guarded(run)


@pytest.mark.parametrize("attention,input_feeding,layers", _DECODERS[:3] + _DECODERS[4:])
def test_decoder_steps(attention, input_feeding, layers):
    K = H if attention == "dot" else 6
    dec = fastgru.AttentionGRUDecoder(I, H, K, attention=attention, input_feeding=input_feeding,
                                      num_layers=layers).to(DEVICE)
    x, keys, lengths = _r(N, 2, I), _r(N, T, K), _lengths(T, 2, 1)

    def run():
        state = dec.init_state(keys, key_lengths=lengths)
        outs = []
        for t in range(2):
            out, state = dec.step(x[:, t], state)
            outs.append(out)
        _backward(*outs, state.context)

    _guarded(run)


def test_greedy_decode():
    dec = fastgru.AttentionGRUDecoder(I, H, 6).to(DEVICE)
    embed = torch.nn.Embedding(5, I).to(DEVICE)
    project = lambda out, ctx: out[:, :5] + ctx[:, :5]  # noqa: E731
    keys = _r(N, T, 6, grad=False)
    _guarded(lambda: fastgru.greedy_decode(dec, embed, project, keys, bos=0, max_len=3, key_lengths=_lengths(T, 2, 1)))


def test_dot_attention_query_without_gradient():
    """A query that needs no gradient (a decoder's fixed query, a probe): the backward op returns
    two empty results (dq, and dw of the dot score) that must be distinct tensors; one shared
    empty tensor was an aliasing error of the custom op."""
    q, k, v = _r(N, 2, 8, grad=False), _r(N, T, 8), _r(N, T, 4)

    def run():
        _backward(*AF.dot_attention(q, k, v, need_weights=True, dropout_p=0.3, **_masks("lengths")))

    _guarded(run)
