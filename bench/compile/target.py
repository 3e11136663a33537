"""The compile target fastgru.launchers.launch hands every launch to under ``compiling``: it compiles the
launch's kernel for the stand-in GPU instead of running it, and records one row per compile."""

from __future__ import annotations

import hashlib
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from fastgru.launchers.launch import Launch, Resources, untuned

from . import ptxas


@dataclass(frozen=True)
class Arch:
    number: int  # 90, 80
    sms: int  # the GPU the dispatcher plans for
    limits: tuple  # (registers per SM, shared bytes per SM, shared bytes one block may take)

    @property
    def shared_limit(self) -> int:
        return self.limits[2]


def arch(number: int) -> Arch:
    from fastgru import gpu

    table = {90: Arch(90, 132, gpu.HOPPER_LIMITS), 80: Arch(80, 108, gpu.AMPERE_LIMITS)}  # H100 SXM, A100
    if number not in table:
        raise SystemExit(f"bench.compile: --arch must be one of {sorted(table)}, got {number}")
    return table[number]


def strategy_of(kernel: str) -> str:
    """The strategy a recurrence kernel (GRU or LSTM) belongs to, from its name (the decoder's kernels own
    whole rows for the whole loop, as rows does)."""
    for word, strategy in (("decoder", "rows"), ("persistent", "persistent"), ("rows", "rows"), ("step", "stepwise"),
                           ("gates", "stepwise"), ("carry", "stepwise"), ("reset", "stepwise"),
                           ("proj", "stepwise")):
        if word in kernel:
            return strategy
    return "?"


def _jsonable(value):
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _spec(arg, exact: bool = True):
    """What Triton specializes an argument on: a tensor's dtype and 16-byte alignment, an int's
    value class (1, a multiple of 16, other) and width; so equal keys mean the same binary.
    Not ``exact``: only the types (one compile per kernel and config)."""
    if hasattr(arg, "dtype") and hasattr(arg, "data_ptr"):
        return ("tensor", str(arg.dtype), arg.data_ptr() % 16 == 0 if exact else None)
    if isinstance(arg, bool) or not isinstance(arg, int):
        return _jsonable(arg) if arg is None or isinstance(arg, (bool, str)) else type(arg).__name__
    return ("int", arg == 1, arg % 16 == 0, -(2**31) <= arg < 2**31) if exact else "int"


class CompileTarget:
    """Implements fastgru.launchers.launch.Target. ``case(...)`` labels the launches that follow; ``rows``
    collects one row per kernel compiled (per config for autotuned kernels)."""

    def __init__(self, arch: Arch, quick: bool = False):
        self.arch = arch
        self.quick = quick  # one config per autotuned kernel
        self.rows: list[dict] = []
        self.label: dict = {}
        self.notes: list[str] = []  # forced strategies the dispatcher cannot plan at a shape
        self._compiled: dict = {}  # specialization key -> result: each binary compiled and ptxas'd once
        self._ptxas: dict = {}  # PTX digest -> (registers, spills)
        self._recorded: set = set()  # (compile key, case label): one row for both
        self._timed: set = set()  # compile keys whose time a row already carries

    @contextmanager
    def case(self, **label):
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous

    # -- fastgru.launchers.launch.Target

    def launch(self, job: Launch):
        for meta, grid in self._variants(job):
            self._record(job, meta, self._compile(job, meta, grid))

    def resources(self, job: Launch):
        """The compiled kernel's footprint (registers from ptxas): what the dispatcher needs to
        decide what fits co-resident. None when it cannot run (compile failure recorded as a
        failed row, or more shared memory than one block may take)."""
        meta, grid = next(self._variants(job))
        result = self._compile(job, meta, grid)
        if result["status"] != "ok":
            self._record(job, meta, result, probe=True)
            return None
        if result["shared_bytes"] > self.arch.shared_limit:
            return None
        return Resources(result["registers"], result["shared_bytes"], result["num_warps"], spill_bytes=result["spill_bytes"])

    # -- compiling

    def _variants(self, job: Launch):
        """(meta, grid) per configuration to compile: the launch itself, or per autotune config."""
        if not job.configs:
            yield dict(job.meta), job.grid
            return
        for cfg in job.configs[:1] if self.quick else job.configs:
            grid = job.grid(cfg.kwargs) if callable(job.grid) else job.grid
            yield {**job.meta, **cfg.all_kwargs()}, grid

    def _compile(self, job: Launch, meta: dict, grid) -> dict:
        key = self._key(job, meta)
        if key in self._compiled:
            return dict(self._compiled[key], cached=True)
        start = time.perf_counter()
        try:
            compiled = untuned(job.kernel).warmup(*job.args, grid=grid, **meta)
            ptx = compiled.asm["ptx"]
            digest = hashlib.sha256(ptx.encode()).hexdigest()
            if digest not in self._ptxas:
                self._ptxas[digest] = ptxas.registers_and_spills(ptx, self.arch.number)
            registers, spills = self._ptxas[digest]
            result = dict(status="ok", error="", shared_bytes=int(compiled.metadata.shared), registers=registers,
                          spill_bytes=spills, mma=ptxas.mma_kind(ptx), approx=ptxas.approx_ops(ptx),
                          num_warps=int(compiled.metadata.num_warps))
        except Exception as exc:  # a compile failure is a result: record it and go on
            result = dict(status="failed", error=f"{type(exc).__name__}: {exc}".strip()[:4000], shared_bytes=None,
                          registers=None, spill_bytes=None, mma=None, approx=None, num_warps=meta.get("num_warps"))
        result["seconds"] = round(time.perf_counter() - start, 2)
        self._compiled[key] = result
        return dict(result, cached=False)

    def _key(self, job: Launch, meta: dict):
        """Same key, same binary. The quick form keeps only dtypes of the arguments: one compile
        per kernel and config, not one per value class of its integer arguments."""
        spec = tuple(_spec(a, exact=not self.quick) for a in job.args)
        return job.name, spec, tuple(sorted((k, str(v)) for k, v in meta.items()))

    def _record(self, job: Launch, meta: dict, result: dict, probe: bool = False):
        seen = (self._key(job, meta), repr(sorted(self.label.items())))
        if seen in self._recorded:  # the same binary again in the same case (a stepwise step)
            return
        self._recorded.add(seen)
        if seen[0] in self._timed:  # its compile time is already on an earlier row
            result = dict(result, seconds=0.0)
        self._timed.add(seen[0])
        label = dict(self.label)
        strategy = label.pop("strategy")
        if strategy == "gru":
            strategy = strategy_of(job.name)
        row = dict(kernel=job.name, strategy=strategy, dtype=label.pop("dtype"), shape=label.pop("shape"),
                   config={k: _jsonable(v) for k, v in meta.items()}, **{k: result[k] for k in ROW_RESULT},
                   **label, probe=probe, cached=result["cached"])
        self.rows.append(row)
        self.progress(row)

    def failed(self, kernel: str, exc: Exception):
        """A launcher raised outside any compile (its own code, or planning): a failed row too."""
        label = dict(self.label)
        row = dict(kernel=kernel, strategy=label.pop("strategy"), dtype=label.pop("dtype"), shape=label.pop("shape"),
                   config={}, status="failed", error=f"{type(exc).__name__}: {exc}"[:4000], shared_bytes=None,
                   registers=None, spill_bytes=None, mma=None, approx=None, seconds=0.0, **label, probe=False, cached=False)
        self.rows.append(row)
        self.progress(row)

    def progress(self, row: dict):
        shape = " ".join(f"{k}={v}" for k, v in row["shape"].items())
        if row["status"] == "ok":
            what = f"regs {row['registers']:3d} spill {row['spill_bytes']} smem {row['shared_bytes']} {row['mma']}"
            if row["approx"]:
                what += " approx " + ",".join(f"{op}x{n}" for op, n in row["approx"].items())
        else:
            what = row["error"].splitlines()[0][:160] if row["error"] else ""
        print(f"[{len(self.rows):4d}] {row['status']:6s} {row['kernel']:26s} {row['dtype']:9s} {shape:28s} {what}"
              f"  {row['seconds']:.1f}s", file=sys.stderr, flush=True)


# approx: {PTX instruction: count} of the approximate math the kernel contains (ptxas.approx_ops).
ROW_RESULT = ("status", "error", "shared_bytes", "registers", "spill_bytes", "mma", "approx", "seconds")
