"""The per-step floor of the persistent GRU strategy: the latency of one grid barrier.

    python -m bench.barrier_floor --out DIR      (CUDA only; `python bench/barrier_floor.py` works too)

Launches bench/barrier_probe_kernel.py (barriers and nothing else) cooperatively at several grid
sizes up to one program per SM, times it with triton.testing.do_bench, and writes
DIR/barrier_floor.json with the environment, the raw timings and microseconds per barrier."""

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(steps: int = 2000) -> dict:
    import triton.testing

    from fastgru.bench.environment import environment

    from bench.barrier_probe_kernel import barrier_loop_kernel

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for grid in sorted({1, 8, 32, sms // 2, sms}):
        counter = torch.zeros(1, dtype=torch.int32, device="cuda")

        def run():
            counter.zero_()
            barrier_loop_kernel[(grid,)](counter, steps, num_warps=4, launch_cooperative_grid=True)

        run()
        torch.cuda.synchronize()
        ok = int(counter.item()) == grid * steps  # every program crossed every barrier
        med, p20, p80 = triton.testing.do_bench(run, quantiles=[0.5, 0.2, 0.8])
        rows.append({"grid": grid, "steps": steps, "median_ms": med, "p20_ms": p20, "p80_ms": p80,
                     "us_per_barrier": 1e3 * med / steps, "counter_ok": ok})
        print(f"grid {grid:4d}: {1e3 * med / steps:.3f} us per barrier (counter ok: {ok})")
    return {"env": environment("cuda"), "kernel": "bench/barrier_probe_kernel.py:barrier_loop_kernel", "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for barrier_floor.json")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("barrier_floor: needs CUDA", file=sys.stderr)
        return 2
    doc = measure(args.steps)
    out = Path(args.out) / "barrier_floor.json"
    out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
