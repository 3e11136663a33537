"""The warm-up pool of ``strategy_table.py --variants``: every kernel the variant run will time,
compiled in parallel worker processes before the timing starts.

Why: the run's cost is mostly some hundred serial Triton compiles (1-6 s each). Triton keeps
what it compiles in its on-disk cache (TRITON_CACHE_DIR, default ~/.triton/cache), shared by
every process of the machine, so a kernel a worker compiled is a cache load in the timing
process. A compiled binary depends on the constexprs (blocks, variant switches, dtypes, SAVE),
the warp count and Triton's specialization of the int arguments (equal to 1, divisible by 16)
and of the pointers (16-byte aligned), not on T's value: a worker makes each row's first call
(forward, and in training the backward) at T = T_WARM (32: divisible by 16 like 512, so the T
argument specializes the same) with the row's dtype, H, B, mode, reset_after, variant, block
and warps (plan.persistent_choice, strategy="persistent"), which compiles exactly the kernels
the timing run uses, the dispatcher's rejected candidates included.

Robustness: workers are spawned (CUDA in a forked child is unsafe) with the parent's TRITON_* and
CUDA_* environment and TF32 flags; a job that fails is reported, never fatal (the timing run
compiles the kernel itself, or records its failure as before); the pool stops at its deadline
(the timing run compiles what is missing); a job over JOB_TIMEOUT_S has its worker killed and
replaced; a job whose kernel was launched and has not returned in HANG_S is reported "hung" (a
grid barrier that never opens), so the timing run can leave that row out rather than hang on it.
Workers run their kernels on the GPU (at T = 32, microseconds each) only before the timing
starts: every worker is gone before the first row is timed. Not yet run on a GPU.

    run_pool(tasks, fn, workers, deadline_s)   the generic pool: fn(task) in workers, per task a result
    warm_item(spec)                            the variant job (a row's first call at T_WARM)
    warm_up(jobs, workers, deadline_s, tf32)   the variant run's pool over variants.warm_jobs
"""

from __future__ import annotations

import os
import queue
import time

T_WARM = 32
JOB_TIMEOUT_S = 120.0
HANG_S = 30.0
POLL_S = 0.1

_report_to = None  # in a worker: (results queue, task id) of the job running


def default_workers() -> int:
    """min(8, CPU cores - 2), 0 on a machine of 2 cores or fewer: the main process and the
    ptxas processes keep the rest."""
    return max(0, min(8, (os.cpu_count() or 1) - 2))


def report(event: str, detail: str = "") -> None:
    """In a worker: tell the parent where the running job is ("running" a kernel name: launched,
    not yet returned; "compiling": back on the host). No-op outside a worker."""
    if _report_to is not None:
        results, task_id = _report_to
        results.put(("event", os.getpid(), task_id, event, detail, time.monotonic()))


def _worker(fn, tasks, results, env: dict) -> None:
    """A worker's loop: take (task id, task), run fn(task), put the outcome; until killed or None."""
    global _report_to
    os.environ.update(env)
    results.put(("ready", os.getpid(), None, "", "", time.monotonic()))
    while True:
        got = tasks.get()
        if got is None:
            return
        task_id, task = got
        _report_to = (results, task_id)
        results.put(("start", os.getpid(), task_id, "", "", time.monotonic()))
        t0 = time.perf_counter()
        try:
            value = fn(task)
            status, detail = "ok", value
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, the worker goes on
            status, detail = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
        _report_to = None
        results.put(("done", os.getpid(), task_id, status, (detail, round(time.perf_counter() - t0, 2)),
                     time.monotonic()))


def _inherited_env() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith(("TRITON_", "CUDA_"))}


def run_pool(tasks: list, fn, workers: int, deadline_s: float, job_timeout_s: float = JOB_TIMEOUT_S,
             hang_s: float = HANG_S) -> list[dict]:
    """fn(task) for every task, in ``workers`` spawned processes taking tasks in order; fn must be
    a module-level function (spawn pickles it by name). Returns, per task in order, a dict:
    status "ok" (value: fn's return), "error" (error: the exception), "timeout" (over
    ``job_timeout_s``: its worker killed and replaced), "hung" (a report("running") not followed
    by another event in ``hang_s``: killed, replaced; error names what was running), "died" (its
    worker exited), "unfinished" (running at the deadline) or "not_run" (not started by then);
    and seconds where it ran. The pool returns at ``deadline_s`` seconds at the latest (plus the
    workers' teardown), every worker terminated."""
    import multiprocessing

    out = [{"status": "not_run"} for _ in tasks]
    if not tasks or workers <= 0 or deadline_s <= 0:
        return out
    ctx = multiprocessing.get_context("spawn")
    task_q, results = ctx.Queue(), ctx.Queue()
    for i, task in enumerate(tasks):
        task_q.put((i, task))
    env = _inherited_env()
    procs: dict = {}  # pid -> process
    respawns = [workers]  # replacements for workers that died by themselves (a broken start-up: not forever)
    running: dict = {}  # pid -> [task id, started, event, event detail, event time]

    def spawn():
        p = ctx.Process(target=_worker, args=(fn, task_q, results, env), daemon=True)
        p.start()
        procs[p.pid] = p

    def kill(pid, status, error):
        task_id, started = running.pop(pid)[:2]
        out[task_id] = {"status": status, "error": error, "seconds": round(time.monotonic() - started, 2)}
        p = procs.pop(pid)
        p.kill()
        p.join(5)
        if any(r["status"] == "not_run" for r in out):
            spawn()

    end = time.monotonic() + deadline_s
    try:
        for _ in range(min(workers, len(tasks))):
            spawn()
        while time.monotonic() < end and any(r["status"] in ("not_run", "running") for r in out):
            try:
                kind, pid, task_id, status, detail, at = results.get(timeout=POLL_S)
            except queue.Empty:
                kind = None
            if kind == "start":
                running[pid] = [task_id, at, "compiling", "", at]
                out[task_id] = {"status": "running"}
            elif kind == "event" and pid in running:
                running[pid][2:] = [status, detail, at]
            elif kind == "done" and pid in running:
                running.pop(pid)
                value, seconds = detail
                out[task_id] = ({"status": "ok", "value": value, "seconds": seconds} if status == "ok"
                                else {"status": "error", "error": value, "seconds": seconds})
            now = time.monotonic()
            for pid, (task_id, started, event, what, event_at) in list(running.items()):
                if event == "running" and now - event_at > hang_s:
                    kill(pid, "hung", f"{what or 'a kernel'} launched and not returned in {hang_s:g} s")
                elif now - started > job_timeout_s:
                    kill(pid, "timeout", f"no result in {job_timeout_s:g} s")
            for pid, p in list(procs.items()):
                if not p.is_alive() and results.empty():
                    procs.pop(pid)
                    if pid in running:
                        task_id = running.pop(pid)[0]
                        out[task_id] = {"status": "died", "error": f"worker exit code {p.exitcode}"}
                    if any(r["status"] == "not_run" for r in out) and respawns[0] > 0:
                        respawns[0] -= 1
                        spawn()
            if not procs:
                break  # every worker died and none may replace them: the rest stays not_run
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.join(5)
        for q in (task_q, results):
            q.cancel_join_thread()
            q.close()
    for r in out:
        if r["status"] == "running":
            r["status"] = "unfinished"
    return out


# ------------------------------------------------------------------------------------ the variant job
def warm_item(spec: dict) -> str:
    """A variant row's first call at T = spec["T"], in a worker: fastgru.GRU(strategy="persistent")
    in the row's dtype under persistent_choice(variant, block_h, num_warps), called as the timing
    run calls it (strategy_table._step: inference under no_grad; training forward and backward),
    the TF32 flags set as the parent's. Every persistent launch reports "running" until it
    returns (synchronized), so a hung grid barrier shows. Returns the plans' kernels, briefly."""
    import torch

    import fastgru
    from bench.strategy_table import DTYPES, _step
    from fastgru.launchers import gru_layer
    from fastgru.launchers.plan import persistent_choice

    torch.backends.cudnn.allow_tf32 = spec["cudnn_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = spec["matmul_tf32"]
    real = gru_layer.launch

    def watched(kernel, grid, args, meta, configs=None):
        name = getattr(getattr(kernel, "fn", kernel), "__name__", "kernel")
        report("running", name)
        result = real(kernel, grid, args, meta, configs)
        torch.cuda.synchronize()
        report("compiling")
        return result

    gru_layer.launch = watched
    try:
        torch.manual_seed(0)
        dtype = DTYPES[spec["dtype"]]
        module = fastgru.GRU(spec["H"], spec["H"], strategy="persistent", reset_after=spec["reset_after"])
        module = module.cuda().to(dtype)
        x = torch.randn(spec["T"], spec["B"], spec["H"], device="cuda", dtype=dtype)
        with persistent_choice(spec["variant"], spec["block_h"], spec["num_warps"]):
            _step(module, x, spec["mode"])()
        torch.cuda.synchronize()
    finally:
        gru_layer.launch = real
    return "ok"


def job_spec(item, cudnn_tf32: bool, matmul_tf32: bool, T: int = T_WARM) -> dict:
    """What warm_item needs of a variants.Item (picklable, no torch objects)."""
    return dict(dtype=item.dtype, mode=item.mode, H=item.H, B=item.B, reset_after=item.reset_after,
                variant=item.variant, block_h=item.block_h, num_warps=item.num_warps, T=T,
                cudnn_tf32=cudnn_tf32, matmul_tf32=matmul_tf32)


def warm_up(jobs, workers: int, deadline_s: float, cudnn_tf32: bool, matmul_tf32: bool, fn=None) -> dict:
    """Run variants.warm_jobs' ``jobs`` in the pool. Returns {"results": {item index: result},
    "warm": the compile keys of the jobs that finished ok, "elapsed_s", "workers", "counts"}.
    Off (nothing run, no key warm) with 0 workers, TRITON_ALWAYS_COMPILE set (the cache would
    not be read) or TRITON_INTERPRET set (nothing compiles)."""
    started = time.monotonic()
    off = workers <= 0 or os.environ.get("TRITON_ALWAYS_COMPILE", "0") not in ("", "0") or \
        os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    tasks = [job_spec(j.item, cudnn_tf32, matmul_tf32) for j in jobs]
    results = [{"status": "not_run"} for _ in jobs] if off else run_pool(tasks, fn or warm_item, workers, deadline_s)
    counts: dict = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"results": {j.index: r for j, r in zip(jobs, results)},
            "warm": {k for j, r in zip(jobs, results) if r["status"] == "ok" for k in j.keys},
            "elapsed_s": round(time.monotonic() - started, 1), "workers": 0 if off else workers, "counts": counts}


def hung_rows(items, jobs, results: dict, tf32: bool = True) -> dict:
    """{item index: reason} for every item that needs a kernel a warm-up job saw hang (launched,
    never returned): the timing run leaves them out rather than hang on them. The hung kernel is
    the job's forward or backward key as its report named it (both where it named neither)."""
    from bench import variants as V

    bad: dict = {}
    for job in jobs:
        r = results.get(job.index, {})
        if r.get("status") != "hung":
            continue
        what = r.get("error", "")
        kinds = {"fwd"} if "gru_fwd" in what else {"bwd"} if "gru_bwd" in what else {"fwd", "bwd"}
        for key in job.keys:
            if key[0] in kinds:
                bad[key] = f"precompile: {what} (row {job.index + 1}'s warm-up); not run, so it cannot hang the run"
    out = {}
    for i, item in enumerate(items):
        reason = next((bad[k] for k in V.kernel_keys(item, tf32) if k in bad), None)
        if reason:
            out[i] = reason
    return out
