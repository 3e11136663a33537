"""python -m bench.compile [--arch 90|80] [--quick] [--out DIR] [--dtype ...] [--forced ...] [--cases ...]

Compiles every fastgru kernel for a GPU this machine need not have, through the real launchers
at the dispatcher's own plans, and writes DIR/compile-smXX.json and .md. Exit code 1 on a failed
compile, shared memory over the arch's limit, or a spill in a recurrence kernel the dispatcher
runs by itself. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile", description=__doc__.split("\n\n")[1])
    p.add_argument("--arch", type=int, default=90, help="compute capability to compile for: 90 (H100) or 80 (A100)")
    p.add_argument("--quick", action="store_true", help="every kernel, one config, one small shape per dtype (CI)")
    p.add_argument("--out", default="bench/results/compile", help="folder for compile-smXX.json and .md")
    p.add_argument("--dtype", default="all", help="comma-separated subset of bf16,fp16,fp32-tf32,fp32-ieee,fp64")
    p.add_argument("--forced", default=None,
                   help="strategies also compiled forced beside the dispatcher's pick (comma-separated, '' for none; "
                        "default: the form's own list)")
    p.add_argument("--cases", default="all",
                   help="comma-separated subset of gru,gru-reset-before,cell,attention,decoder,gru-small,lstm,lstm-proj,"
                        "lstm-cell: the case families to compile (default: all); persistent-variants (the persistent "
                        "kernel's step variants) only when named")
    args = p.parse_args(argv)

    from . import driver

    driver.install(args.arch)  # before anything imports a kernel module

    import torch
    import triton

    from fastgru import gpu
    from fastgru.launchers.launch import compiling

    from . import cases, report
    from .target import CompileTarget, arch

    a = arch(args.arch)
    dtypes = tuple(cases.DTYPES) if args.dtype == "all" else tuple(args.dtype.split(","))
    unknown = [d for d in dtypes if d not in cases.DTYPES]
    if unknown:
        p.error(f"unknown dtype {unknown}; choose from {', '.join(cases.DTYPES)}")
    families = tuple(cases.FAMILIES) if args.cases == "all" else tuple(args.cases.split(","))
    unknown = [f for f in families if f not in cases.FAMILIES + cases.OPT_IN_FAMILIES]
    if unknown:
        p.error(f"unknown cases {unknown}; choose from {', '.join(cases.FAMILIES + cases.OPT_IN_FAMILIES)}")
    grid = cases.QUICK if args.quick else cases.FULL
    if args.forced is not None:
        forced = tuple(s for s in args.forced.split(",") if s)
        grid = dataclasses.replace(grid, gru_forced=forced, lstm_forced=forced)
    target = CompileTarget(a, quick=args.quick)
    start = time.perf_counter()
    with gpu.assume_gpu(a.sms, a.limits), compiling(target):
        cases.run_all(target, grid, dtypes, families)
    seconds = time.perf_counter() - start
    meta = dict(form="quick" if args.quick else "full", forced=list(grid.gru_forced), dtypes=list(dtypes),
                cases=list(families), triton=triton.__version__, torch=torch.__version__,
                gpu=f"{a.sms} SMs, sm_{a.number}", seconds=seconds, shared_limit=a.shared_limit)
    paths = report.write(args.out, a.number, target.rows, target.notes, meta)
    s = report.summary(target.rows, a.shared_limit)
    bad = report.problems(target.rows, a.shared_limit)
    print(f"bench.compile: {s['ok']} ok, {s['failed']} failed, {s['spilled']} spilled, max {s['max_registers']} registers, "
          f"max {s['max_shared_bytes']} B shared, {seconds:.0f} s -> {', '.join(paths)}", file=sys.stderr)
    for b in bad:
        print(f"  {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
