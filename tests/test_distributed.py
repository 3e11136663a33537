"""fastgru's models trained in several processes: GRUAttention and AttentionGRUDecoder under
DistributedDataParallel and under FSDP2 (``fully_shard``), gloo, two processes on the CPU, on the
CPU default (PyTorch's ops) and on fastgru's kernels through Triton's interpreter.

After STEPS steps of SGD with momentum on their halves of the same global batches:
- the two replicas' parameters are bitwise equal;
- every parameter moved (gradients flowed; nothing passes by training nothing);
- they are bitwise equal to one process that averages the two halves' gradients (what the
  all-reduce computes: each half's gradient times 1/2, exact, then their sum, the same in either
  order);
- they match one process training on each whole global batch in one forward to WHOLE_BATCH_RTOL:
  the whole batch reduces its weight gradients over all rows at once, the halves over two rows
  each, so the two differ by rounding (fp64 models keep that at fp64's rounding).
GRUAttention under DDP with torch.compile around it (fastgru's custom ops in the graph) is held
to the same replicas and the same bitwise equality.

Spawning costs seconds, so one spawn of two processes runs everything: every (wrapper, backend,
model), then the single-process references, split between the two processes. They meet through
a FileStore in tmp_path (no port to collide on) and return their parameters through files there.
"""

import pytest
import torch

import distributed_worker as W
from fastgru import backend

dist = torch.distributed
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

WRAPPERS = ("ddp", "fsdp")

# Against one process training on the whole global batch: the largest |difference| of any
# parameter, relative to the largest |change| training made to it. Measured: 3.1e-15 at most over
# every (wrapper, backend, model) (gru.weight_hh_l0 of the decoder; 3.4e-14 with three steps and
# longer sequences): fp64's rounding (eps 2.2e-16) in the weight gradients' row sums, carried
# through the steps. 1e-12 leaves room for another BLAS's order, while an error in the averaging
# (a sum for a mean, a half left out) moves parameters by a large fraction of their change.
WHOLE_BATCH_RTOL = 1e-12


def _fsdp_missing():
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError as e:
        return f"torch.distributed.fsdp.fully_shard (FSDP2) is not importable: {e}"
    return None


def _backends():
    """The CPU default, and the interpreter where Triton is installed (the spawned processes turn
    it on before they first import Triton)."""
    return tuple(b for b in W.BACKENDS if b != "interpret" or backend.HAS_TRITON)


def _runs():
    """(wrapper, backend, model, compiled) for the distributed part: every (backend, model)
    eagerly under each wrapper, and GRUAttention under DDP compiled on the interpreter (fastgru's
    custom ops in the graph; one model only: compiling costs seconds)."""
    wrappers = [w for w in WRAPPERS if w != "fsdp" or not _fsdp_missing()]
    runs = [(w, b, n, False) for w in wrappers for b in _backends() for n in W.MODELS]
    if "interpret" in _backends():
        runs.append(("ddp", "interpret", "attention", True))
    return runs


def _references():
    """(backend, model, accumulate): one process on the whole batches, and one averaging halves."""
    return [(b, n, a) for b in _backends() for n in W.MODELS for a in (1, W.WORLD)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(initial data, {run or ("single", backend, model, accumulate): [parameters per process]})
    from one spawn of WORLD processes (a reference comes from the one process that ran it)."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("distributed")
    data = W.prepare(str(out / "data.pt"))
    with pytest.MonkeyPatch.context() as env:  # the processes inherit it
        env.setenv("FASTGRU_NAN_FILL", "1")  # as tests/conftest.py: an unwritten kernel output shows as NaN
        mp.spawn(W.worker, args=(str(out / "store"), str(out / "data.pt"), str(out), _runs(), _references()),
                 nprocs=W.WORLD, join=True)
    results = {}
    for r in range(W.WORLD):
        for key, params in torch.load(out / f"rank{r}.pt").items():
            results.setdefault(key, []).append(params)
    return data, results


def _check_replicas(replicas, init):
    """Bitwise-equal replicas, every parameter trained."""
    rank0, rank1 = replicas
    assert rank0.keys() == rank1.keys() == init.keys()
    for k in init:
        assert torch.equal(rank0[k], rank1[k]), (
            f"{k}: the replicas differ after training by {(rank0[k] - rank1[k]).abs().max().item():.3e}")
        assert not torch.equal(rank0[k], init[k]), f"{k}: training did not change it (no gradient reached it)"


def _check_equal(params, ref, init, what):
    for k in init:
        assert torch.equal(params[k], ref[k]), (
            f"{k}: differs from {what} by {(params[k] - ref[k]).abs().max().item():.3e}")


def _check_close(params, ref, init, rtol, what):
    """Every parameter within ``rtol`` of the largest change training made to it in ``ref``."""
    for k in init:
        change = (ref[k] - init[k]).abs().max().item()
        diff = (params[k] - ref[k]).abs().max().item()
        assert diff <= rtol * change, f"{k}: differs from {what} by {diff:.3e}, {diff / change:.3e} of its change"


def _skip_unless(which, wrapper="ddp"):
    if wrapper == "fsdp" and _fsdp_missing():
        pytest.skip(_fsdp_missing())
    if which not in _backends():
        pytest.skip("the interpreter backend needs triton, which is not installed")


@pytest.mark.parametrize("name", W.MODELS)
@pytest.mark.parametrize("which", W.BACKENDS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_replicas_match_one_process(wrapper, which, name, trained):
    _skip_unless(which, wrapper)
    data, results = trained
    init = data[name]["init"]
    replicas = results[(wrapper, which, name, False)]
    _check_replicas(replicas, init)

    (averaged,) = results[("single", which, name, W.WORLD)]
    _check_equal(replicas[0], averaged, init, "one process averaging the halves' gradients")

    (whole,) = results[("single", which, name, 1)]
    _check_close(replicas[0], whole, init, WHOLE_BATCH_RTOL, "one process on the whole batch")


def test_compiled_ddp_matches_eager(trained):
    """torch.compile (aot_eager) around DDP (Dynamo splits the graph at DDP's buckets) with
    fastgru's custom ops in the graph: equal replicas, bitwise equal to the eager single process
    averaging the halves (measured exact: the compiled graph runs the same ops and kernels)."""
    _skip_unless("interpret")
    data, results = trained
    init = data["attention"]["init"]
    replicas = results[("ddp", "interpret", "attention", True)]
    _check_replicas(replicas, init)
    (averaged,) = results[("single", "interpret", "attention", W.WORLD)]
    _check_equal(replicas[0], averaged, init, "one eager process averaging the halves' gradients")
    (whole,) = results[("single", "interpret", "attention", 1)]
    _check_close(replicas[0], whole, init, WHOLE_BATCH_RTOL, "one eager process on the whole batch")
