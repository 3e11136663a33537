"""The GRUCell providers of a case, one decode step h' = cell(x, h) under no_grad: fastgru.GRUCell,
nn.GRUCell and torch.compile of fastgru.reference.gru_cell; the ground truth is the reference in
float64."""

from __future__ import annotations

import torch
from torch import nn

from fastgru import reference
from fastgru.bench import flops
from fastgru.bench.cases import Case
from fastgru.bench.providers import Prepared, Setup, Unavailable, backend_name, compile_cold, compiled_prepared


def cell_setup(case: Case, device, copies: int = 1) -> Setup:
    s, dtype = case.shape, case.torch_dtype
    gen = torch.Generator().manual_seed(case.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        src = nn.GRUCell(s["I"], s["H"])
    src = src.to(device=device, dtype=dtype)
    sets = [
        (torch.randn(s["B"], s["I"], generator=gen).to(device, dtype),
         (0.5 * torch.randn(s["B"], s["H"], generator=gen)).to(device, dtype))
        for _ in range(copies)
    ]

    def prepared(fn, backend=None, compile_s=None):
        def step_for(x, h):
            def step():
                with torch.no_grad():
                    return fn(x, h)
            return step
        calls = [step_for(x, h) for x, h in sets]
        return Prepared(calls, lambda: {"output": calls[0]()}, compile_s, backend)

    def make_fastgru():
        import fastgru

        if not hasattr(fastgru, "GRUCell"):
            raise Unavailable("fastgru.GRUCell is not available in this build")
        mod = fastgru.GRUCell(s["I"], s["H"], device=device, dtype=dtype)
        mod.load_state_dict(src.state_dict())
        return prepared(mod, backend=backend_name(device))

    def weights(m):
        return m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh

    def compiled():
        fn = compile_cold(reference.gru_cell)
        w = [t.detach() for t in weights(src)]
        return compiled_prepared(prepared(lambda x, h: fn(x, h, *w)))

    def reference_results():
        x, h = sets[0]
        w = [t.detach().double() for t in weights(src)]
        return {"output": reference.gru_cell(x.double(), h.double(), *w)}

    providers = {"fastgru": make_fastgru, "nn.GRUCell": lambda: prepared(src), "compiled_ref": compiled}
    elem = torch.tensor([], dtype=dtype).element_size()
    cost = flops.gru(1, s["B"], s["I"], s["H"], mode="inference", elem_bytes=elem)  # one step
    in_bytes = elem * (s["B"] * (s["I"] + 2 * s["H"]) + 3 * s["H"] * (s["I"] + s["H"]))
    return Setup(reference_results, providers, ("fastgru",), "nn.GRUCell", s["B"], cost, in_bytes,
                 tf32_follows="matmul")
