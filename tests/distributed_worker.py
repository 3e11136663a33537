"""What tests/test_distributed.py runs in its spawned processes, and what it shares with them.

The models (GRUAttention, AttentionGRUDecoder), their data and their loss are built here once by
the test process and saved to a file (``prepare``), so every process trains exactly the same
initial parameters on slices of exactly the same global batches. ``train`` is the one training
loop: under DistributedDataParallel or FSDP2's ``fully_shard`` (``worker``), and plain for the
single-process references (``single``, which the same spawned processes run afterwards, so the
references use both cores). Each process saves its full parameters after training; the test
compares them.

Spawned processes import this module by name (``multiprocessing``'s spawn start method passes the
parent's ``sys.path``, which holds tests/ as pytest's rootdir-relative import puts it there), so it
must not depend on pytest. Nothing here reads or sets the environment at import: the interpreter
is chosen per run with ``fastgru.backend.using("interpret")``, before Triton is first imported.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

import fastgru
from fastgru import backend

MODELS = ("attention", "decoder")
BACKENDS = ("torch", "interpret")  # the CPU default (PyTorch's ops) and fastgru's kernels, interpreted
WORLD = 2
STEPS = 2  # the second step uses the momentum the first left
LOCAL_BATCH = 2  # rows per process; the global batch is WORLD * LOCAL_BATCH
DTYPE = torch.float64
LR, MOMENTUM = 0.5, 0.9

# Tiny shapes: the interpreter runs every kernel program in Python.
T, I, H, CLASSES = 3, 3, 4, 3  # GRUAttention: steps, features, hidden, classes
T_OUT, T_IN, K = 2, 3, 5  # the decoder: output steps, key steps, key size


def build(name: str) -> torch.nn.Module:
    """A fresh model (its parameters are overwritten by ``prepare``'s initial state)."""
    if name == "attention":
        return fastgru.GRUAttention(I, H, CLASSES, dtype=DTYPE)
    if name == "decoder":
        return fastgru.AttentionGRUDecoder(I, H, K, attention="additive", dtype=DTYPE)
    raise ValueError(f"name must be one of {MODELS}, got {name!r}")


def batches(name: str, generator: torch.Generator) -> list[dict]:
    """STEPS global batches of WORLD * LOCAL_BATCH rows. Lengths vary per row, so the masking paths
    (the GRU's per-row lengths, the attention masks) run and rows differ in their cost."""
    n = WORLD * LOCAL_BATCH
    out = []
    for _ in range(STEPS):
        if name == "attention":
            out.append(dict(x=torch.randn(n, T, I, dtype=DTYPE, generator=generator),
                            lengths=torch.randint(1, T + 1, (n,), generator=generator),
                            target=torch.randint(0, CLASSES, (n,), generator=generator)))
        else:
            out.append(dict(x=torch.randn(n, T_OUT, I, dtype=DTYPE, generator=generator),
                            keys=torch.randn(n, T_IN, K, dtype=DTYPE, generator=generator),
                            key_lengths=torch.randint(1, T_IN + 1, (n,), generator=generator),
                            target=torch.randn(n, T_OUT, H, dtype=DTYPE, generator=generator)))
    return out


def loss_of(name: str, model, b: dict) -> torch.Tensor:
    """The batch's mean loss (a mean over rows, so the mean of equal halves' losses is the whole's)."""
    if name == "attention":
        logits, _ = model(b["x"], lengths=b["lengths"])
        return F.cross_entropy(logits, b["target"])
    outputs, contexts, _, h_n = model(b["x"], b["keys"], key_lengths=b["key_lengths"])
    return F.mse_loss(outputs, b["target"]) + contexts.square().mean()


def prepare(path: str, seed: int = 0) -> dict:
    """Build every model's initial parameters and its global batches; save them to ``path``."""
    gen = torch.Generator().manual_seed(seed)
    data = {}
    for name in MODELS:
        torch.manual_seed(seed)
        data[name] = dict(init={k: v.clone() for k, v in build(name).state_dict().items()},
                          batches=batches(name, gen))
    torch.save(data, path)
    return data


def rows(b: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in b.items()}


def full_parameters(model) -> dict:
    """Every parameter as a plain tensor (an FSDP2 DTensor gathered whole)."""
    out = {}
    for k, p in model.named_parameters():
        p = p.detach()
        if hasattr(p, "full_tensor"):
            p = p.full_tensor()
        for prefix in ("_orig_mod.", "module."):  # torch.compile's wrapper, then DDP's
            k = k[len(prefix):] if k.startswith(prefix) else k
        out[k] = p.clone()
    return out


def train(name: str, model, steps: list[dict], which: str, accumulate: int = 1) -> dict:
    """SGD with momentum over ``steps`` on backend ``which``; returns the trained parameters.
    ``accumulate`` > 1 splits each batch into that many equal slices and averages their gradients
    (what DDP's all-reduce computes, done in one process)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    with backend.using(which):
        for b in steps:
            opt.zero_grad(set_to_none=True)
            if accumulate == 1:
                loss_of(name, model, b).backward()
            else:
                n = len(next(iter(b.values()))) // accumulate
                grads = []
                for r in range(accumulate):
                    part = torch.autograd.grad(loss_of(name, model, rows(b, r * n, (r + 1) * n)),
                                               list(model.parameters()))
                    grads.append([g / accumulate for g in part])  # DDP scales each rank's gradient by 1/world
                for p, *gs in zip(model.parameters(), *grads):
                    total = gs[0]
                    for g in gs[1:]:
                        total = total + g
                    p.grad = total
            opt.step()
    return full_parameters(model)


def wrap(wrapper: str, name: str, model):
    """The model under DDP, or under FSDP2 (fully_shard on the GRUAttention's encoder, then on the
    root; the decoder as one unit, since it reads its GRU's parameters without calling the GRU)."""
    if wrapper == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)
    if wrapper == "fsdp":
        from torch.distributed.fsdp import fully_shard

        if name == "attention":
            fully_shard(model.encoder)
        return fully_shard(model)
    raise ValueError(f"wrapper must be 'ddp' or 'fsdp', got {wrapper!r}")


def single(data: dict, which: str, name: str, accumulate: int) -> dict:
    """One process (no process group) training ``name`` on the whole global batches."""
    model = build(name)
    model.load_state_dict(data[name]["init"])
    return train(name, model, data[name]["batches"], which, accumulate=accumulate)


def worker(rank: int, init_file: str, data_file: str, out_dir: str, runs, references) -> None:
    """One process of WORLD. First each run (wrapper, backend, model, compiled) of ``runs`` on its
    rows of each global batch (``compiled``: torch.compile around the wrapped model with the
    aot_eager backend: Dynamo, AOTAutograd and DDP's graph splitting at its buckets, without
    Inductor's C++ compile); then, the process group gone, its share of ``references``
    (backend, model, accumulate), trained on the whole batches as by ``single`` (the ranks split
    them so both cores work). Saves {run or reference: parameters} to ``out_dir/rank{rank}.pt``."""
    import torch.distributed as dist

    torch.set_num_threads(1)  # WORLD processes on as many cores
    data = torch.load(data_file)
    results = {}
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for wrapper, which, name, compiled in runs:
            model = build(name)
            model.load_state_dict(data[name]["init"])
            mine = [rows(b, rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH) for b in data[name]["batches"]]
            model = wrap(wrapper, name, model)
            if compiled:
                model = torch.compile(model, backend="aot_eager")
            results[(wrapper, which, name, compiled)] = train(name, model, mine, which)
    finally:
        dist.destroy_process_group()
    for which, name, accumulate in references[rank::WORLD]:
        results[("single", which, name, accumulate)] = single(data, which, name, accumulate)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
