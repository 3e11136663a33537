"""The per-step floor of the persistent GRU strategy: the latency of one grid barrier, in each of
the persistent kernel's barrier forms.

    python -m bench.barrier_floor --out DIR [--steps 2000] [--work 256]   (CUDA; `python bench/barrier_floor.py` too)
    python -m bench.barrier_floor --dry-run                                (the configurations, no GPU)

Launches bench/barrier_probe_kernel.py cooperatively at several grid sizes up to one program per
SM and times each with triton.testing.do_bench:

  grid_barrier            the original probe (kernels/gru_common.py's grid_barrier), as measured
                          on 2026-11-23: the floor the older numbers in bench/NOTES.md cite;
  counter / flags         barrier_arrive + barrier_wait with one shared counter, or one flag per
                          program polled by every peer; WORK = 0: the barrier alone;
  ... work unsplit        WORK dependent FMAs, then arrive and wait (the work serialized with the
                          barrier);
  ... work split          arrive, the WORK FMAs, wait: how much of the barrier the work hides.
                          (unsplit - split) / step is the latency a split barrier saves per step.

After each timed run the barrier memory is checked: the counter holds grid * steps, every flag
holds steps (every program crossed every barrier). DIR/barrier_floor.json gets the environment,
the raw timings and microseconds per barrier."""

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run by path: make the repository's bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (name, FLAGS, SPLIT, with work): barrier_variant_kernel's configurations, the plain probe first.
FORMS = (("counter", False, False, False), ("flags", True, False, False),
         ("counter work unsplit", False, False, True), ("counter work split", False, True, True),
         ("flags work unsplit", True, False, True), ("flags work split", True, True, True))


def grids(sms: int) -> list[int]:
    """The grid sizes timed: 1, 8, 32, half the SMs and all of them."""
    return sorted({1, 8, 32, sms // 2, sms})


def block_p(grid: int) -> int:
    """The flag vector's width: the grid padded to a power of two."""
    return 1 << max(0, (grid - 1).bit_length())


def configurations(sms: int) -> list[tuple]:
    """(grid, name, FLAGS, SPLIT, with work) of every timed run, grid_barrier's as name 'grid_barrier'."""
    return [(g, "grid_barrier", False, False, False) for g in grids(sms)] + [
        (g, *form) for g in grids(sms) for form in FORMS]


def barrier_ok(group: torch.Tensor, flags: bool, grid: int, steps: int) -> bool:
    """Every program crossed every barrier: the counter holds grid * steps, or each flag steps."""
    if flags:
        return bool((group[:grid] == steps).all().item())
    return int(group[0].item()) == grid * steps


def launch(group, out, grid: int, steps: int, work: int, flags: bool, split: bool, **launch_kw) -> None:
    """One launch of barrier_variant_kernel over ``grid`` programs on barrier memory ``group``
    (one counter, or ``grid`` flags), each program's work result into ``out``."""
    from bench.barrier_probe_kernel import barrier_variant_kernel

    barrier_variant_kernel[(grid,)](group, out, steps, work, FLAGS=flags, SPLIT=split,
                                    BLOCK_P=block_p(grid) if flags else 1, **launch_kw)


def measure(steps: int = 2000, work: int = 256) -> dict:
    import triton.testing

    from fastgru.bench.environment import environment

    from bench.barrier_probe_kernel import barrier_loop_kernel

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for grid, name, flags, split, with_work in configurations(sms):
        n_work = work if with_work else 0
        group = torch.zeros(grid if flags else 1, dtype=torch.int32, device="cuda")
        out = torch.empty(grid, dtype=torch.float32, device="cuda")

        if name == "grid_barrier":
            def run():
                group.zero_()
                barrier_loop_kernel[(grid,)](group, steps, num_warps=4, launch_cooperative_grid=True)
        else:
            def run():
                group.zero_()
                launch(group, out, grid, steps, n_work, flags, split, num_warps=4, launch_cooperative_grid=True)

        row = {"grid": grid, "barrier": name, "flags": flags, "split": split, "work": n_work, "steps": steps}
        try:
            run()
            torch.cuda.synchronize()
            ok = barrier_ok(group, flags, grid, steps)
            med, p20, p80 = triton.testing.do_bench(run, quantiles=[0.5, 0.2, 0.8])
            ok = ok and barrier_ok(group, flags, grid, steps)  # the last timed run too
            row.update(median_ms=med, p20_ms=p20, p80_ms=p80, us_per_barrier=1e3 * med / steps, barrier_ok=ok,
                       counter_ok=ok)
            print(f"grid {grid:4d} {name:22}: {1e3 * med / steps:.3f} us per step (barrier ok: {ok})", flush=True)
        except Exception as exc:  # noqa: BLE001 - recorded, the other forms go on
            row.update(error=f"{type(exc).__name__}: {str(exc)[:300]}")
            print(f"grid {grid:4d} {name:22}: {row['error']}", flush=True)
        rows.append(row)
    return {"env": environment("cuda"), "kernel": "bench/barrier_probe_kernel.py", "work_fmas": work, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for barrier_floor.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--work", type=int, default=256, help="dependent FMAs of the 'work' forms (about 0.5 us)")
    parser.add_argument("--dry-run", action="store_true", help="list the configurations (an H100's 132 SMs) and exit")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.work < 0:
        parser.error(f"--steps must be >= 1 and --work >= 0, got {args.steps}, {args.work}")
    if args.dry_run:
        for grid, name, flags, split, with_work in configurations(132):
            print(f"grid {grid:4d}  {name:22}  FLAGS={flags!s:5} SPLIT={split!s:5} work={args.work if with_work else 0}")
        return 0
    if not torch.cuda.is_available():
        print("barrier_floor: needs CUDA", file=sys.stderr)
        return 2
    doc = measure(args.steps, args.work)
    out = Path(args.out) / "barrier_floor.json"
    out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
