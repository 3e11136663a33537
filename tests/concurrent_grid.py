"""Run a launch's programs under Triton's interpreter as concurrent threads, so that kernels whose
programs wait for each other (the persistent GRU's grid barrier) can run in CI.

Triton's interpreter (triton/runtime/interpreter.py, 3.6 and 3.9 alike) runs a launch in
``GridExecutor.__call__``: it copies the arguments to host memory once, patches triton.language
once, then loops over the grid calling ``interpreter_builder.set_grid_idx(x, y, z)`` and the
kernel, one program after another. A program that spins on a counter its peers have not yet
incremented therefore spins forever. The only per-program state is the module-level builder's
``grid_idx`` (read by ``program_id`` and ``device_print``); the argument copies, ``num_programs``
and the patched language are shared by every program, as memory is on a GPU.

``concurrent_grid()`` changes that within a ``with`` block:

* each launch's kernel is replaced by a recorder (same signature and globals, so the executor
  treats it as the kernel). The executor's loop hands it every program id in turn; at the last
  one it starts one thread per program, each with its own program id (a thread-local
  ``program_id``), and returns when all have finished, inside the executor's call, so the
  patched language is still in place and the results are copied back as usual;
* the threads run one at a time under a seeded scheduler that may hand the turn to another
  program at every memory access (load, store, atomic): ``policy="random"`` picks any unfinished
  program each time (fine-grained, reproducible interleavings); ``"sequential"`` / ``"reverse"``
  keep running one program, in grid order or its reverse, until it spins (polls again with
  nothing written since), which is the interpreter's own order as far as the barrier allows.
  A barrier that lets a program pass too early then reads or overwrites a peer's state at the
  wrong time, and the result is wrong;
* a program that polls (an atomic add of zero, as ``grid_barrier`` does) twice with no write of
  any program in between is waiting; when every unfinished program is waiting, none can ever
  write again: the launch stops with ``GridDeadlock`` (the interpreter wraps it in its
  ``InterpreterError``; ``deadlock_in`` finds it). A wall-clock ``timeout`` backs this up (for
  spins the detector does not know: a loop on plain or atomic loads, or on a CAS, which counts as
  a write), so a broken barrier fails a test and never hangs CI.

One program runs at a time, so each memory access is atomic and the model is sequentially
consistent: this checks the protocol (who waits for whom, on which counter, up to which target),
not the GPU's memory ordering (release/acquire, .cg loads), which only the compiled code shows.
"""

from __future__ import annotations

import inspect
import math
import random
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


class GridDeadlock(RuntimeError):
    """Every unfinished program waits on a value no program will write (or the timeout passed)."""


class _Stop(BaseException):
    """Unwinds a program thread once its launch has stopped (not an Exception: the interpreter's
    own ``except Exception`` wrappers must not catch it)."""


@dataclass
class LaunchRecord:
    """What one concurrent launch did."""

    name: str
    grid: tuple
    switches: int = 0  # times the turn passed to another program
    polls: int = 0  # atomic polls (atomic_add of 0)
    arrivals: Counter = field(default_factory=Counter)  # address -> sum of non-zero atomic adds


@dataclass
class GridLog:
    launches: list = field(default_factory=list)


_local = threading.local()


class _Launch:
    """One launch's programs, one thread each, exactly one running at a time."""

    def __init__(self, fn, calls, policy, rng, timeout, record):
        self.fn, self.calls, self.policy, self.rng = fn, calls, policy, rng
        self.timeout, self.record = timeout, record
        self.n = len(calls)
        self.lock = threading.Lock()
        # One condition per program, and one for the launching thread (index n): a hand-over
        # wakes only the program that gets the turn.
        self.wake = [threading.Condition(self.lock) for _ in range(self.n + 1)]
        self.alive = list(range(self.n))
        self.polls = [0] * self.n  # polls since the last write of any program
        self.seen = [None] * self.n  # each program's last poll: (address, value read)
        self.turn = self.alive[-1] if policy == "reverse" else 0
        self.stopped = False
        self.error: BaseException | None = None

    # -- scheduling (called with self.lock held) --------------------------------------------------
    def _waiting(self, j):
        return self.polls[j] >= 2

    def _pick(self, i, spinning):
        """The program that runs next after program ``i``'s memory access (``spinning``: it polls
        again with nothing written since its last poll, or it has finished)."""
        ready = [j for j in self.alive if not self._waiting(j)]
        if self.policy == "random":
            return self.rng.choice(ready or self.alive)
        if not spinning and i in self.alive:
            return i
        order = sorted(self.alive, reverse=self.policy == "reverse")
        later = [j for j in order if (j > i if self.policy == "sequential" else j < i)]
        rotated = later + [j for j in order if j not in later]
        return next((j for j in rotated if j != i and j in ready), i if i in self.alive else rotated[0])

    def _check_deadlock(self):
        if self.alive and all(self._waiting(j) for j in self.alive):
            waits = {self.calls[j][0]: self.seen[j] for j in self.alive}
            self._stop(GridDeadlock(f"{self.record.name}: programs all wait on atomic polls that no program can "
                                    f"satisfy (program: (address, value read)): {waits}; arrivals per address: "
                                    f"{dict(self.record.arrivals)}"))

    def _stop(self, error):
        if not self.stopped:
            self.stopped, self.error = True, error
        for c in self.wake:
            c.notify()

    def _wait_turn(self, i):
        while self.turn != i and not self.stopped:
            self.wake[i].wait(1.0)
        if self.stopped:
            raise _Stop

    def _hand_over(self, i, j):
        if j != i:
            self.record.switches += 1
            self.turn = j
            self.wake[j].notify()
        self._wait_turn(i)

    # -- called by a program thread before each memory access --------------------------------------
    def access(self, kind, address=None, amount=0):
        """Program ``_local.index`` is about to make a memory access of ``kind`` ("load", "write"
        or "poll"): maybe hand the turn to another program first; the access is made as soon as
        this returns (nothing else runs until the next call), so it is counted here."""
        i = _local.index
        with self.lock:
            if self.stopped:
                raise _Stop
            self._hand_over(i, self._pick(i, kind == "poll" and self.polls[i] >= 1))
            if kind == "write":
                self.polls = [0] * self.n
                if address is not None:
                    self.record.arrivals[address] += amount
            elif kind == "poll":
                self.record.polls += 1
                self.polls[i] += 1
                self._check_deadlock()
                if self.stopped:
                    raise _Stop

    # -- threads --------------------------------------------------------------------------------------
    def _program(self, i):
        idx, args = self.calls[i]
        _local.run, _local.index, _local.grid_idx = self, i, idx
        try:
            with self.lock:
                self._wait_turn(i)
            self.fn(**args)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the launching thread
            with self.lock:
                self._stop(e)
        finally:
            with self.lock:
                if i in self.alive:
                    self.alive.remove(i)
                self.polls[i] = 0
                if not self.stopped:
                    self._check_deadlock()
                if self.alive and not self.stopped and self.turn == i:
                    self.turn = self._pick(i, True)
                    self.wake[self.turn].notify()
                if not self.alive:
                    self.wake[self.n].notify()

    def run(self):
        threads = [threading.Thread(target=self._program, args=(i,), daemon=True, name=f"program{self.calls[i][0]}")
                   for i in range(self.n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.timeout
        with self.lock:
            while self.alive and not self.stopped:
                if time.monotonic() > deadline:
                    self._stop(GridDeadlock(f"{self.record.name}: not finished within {self.timeout:.0f} s"))
                    break
                self.wake[self.n].wait(1.0)
        for t in threads:
            t.join(5.0)
        if self.error is not None:
            raise self.error


class _Programs:
    """Stands in for a kernel inside the interpreter's ``GridExecutor``: collects each program's
    id and arguments, and at the grid's last program runs them all as a concurrent launch."""

    def __init__(self, fn, builder, options):
        self.fn, self.builder, self.options = fn, builder, options
        self.__signature__ = inspect.signature(fn)
        self.__globals__ = fn.__globals__
        self.__name__ = fn.__name__
        self.__annotations__ = getattr(fn, "__annotations__", {})
        self.calls = []

    def __call__(self, **args):
        self.calls.append((tuple(self.builder.grid_idx), args))
        grid = tuple(self.builder.grid_dim)
        if len(self.calls) < math.prod(grid):
            return
        calls, self.calls = self.calls, []
        policy, rng, timeout, log = self.options
        record = LaunchRecord(self.__name__, grid)
        log.launches.append(record)
        _Launch(self.fn, calls, policy, rng, timeout, record).run()


def deadlock_in(exc: BaseException) -> GridDeadlock | None:
    """The GridDeadlock behind ``exc`` (the interpreter re-raises kernel errors as its own)."""
    while exc is not None:
        if isinstance(exc, GridDeadlock):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _hooks(builder):
    """Instance attributes that shadow the builder's methods: a per-thread program id, and a
    scheduling point before every memory access."""
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    cls = type(builder)
    add = next(op for op in cls.ir_rmw_op_to_interpreter_rmw_op if op.name == "ADD")

    def program_id(axis):
        if getattr(_local, "run", None) is None:
            return cls.create_get_program_id(builder, axis)
        return TensorHandle(np.array([_local.grid_idx[axis]], dtype=np.int32), tl.int32)

    def scheduled(kind, method):
        def hooked(*args, **kwargs):
            if getattr(_local, "run", None) is not None:
                _local.run.access(kind)
            return method(builder, *args, **kwargs)
        return hooked

    def atomic_rmw(op, ptr, val, mask, *rest):
        if getattr(_local, "run", None) is not None:
            if op == add and not np.any(np.where(mask.data, val.data, 0)):
                _local.run.access("poll")
                seen = cls.create_atomic_rmw(builder, op, ptr, val, mask, *rest)
                _local.run.seen[_local.index] = (int(ptr.data.reshape(-1)[0]), int(seen.data.reshape(-1)[0]))
                return seen
            if op == add and ptr.data.size == 1:  # a counter's arrival
                _local.run.access("write", int(ptr.data.reshape(-1)[0]), int(val.data.reshape(-1)[0]))
            else:
                _local.run.access("write")
        return cls.create_atomic_rmw(builder, op, ptr, val, mask, *rest)

    return {
        "create_get_program_id": program_id,
        "create_masked_load": scheduled("load", cls.create_masked_load),
        "create_masked_store": scheduled("write", cls.create_masked_store),
        "create_atomic_cas": scheduled("write", cls.create_atomic_cas),
        "create_atomic_rmw": atomic_rmw,
    }


@contextmanager
def concurrent_grid(policy: str = "random", seed: int = 0, timeout: float = 120.0):
    """Within the block, every interpreted launch runs its programs concurrently (see the module
    docstring). Yields a ``GridLog`` of the launches. Needs TRITON_INTERPRET=1."""
    if policy not in ("random", "sequential", "reverse"):
        raise ValueError(f"policy must be 'random', 'sequential' or 'reverse', got {policy!r}")
    from triton.runtime import interpreter

    builder, executor = interpreter.interpreter_builder, interpreter.GridExecutor
    log = GridLog()
    options = (policy, random.Random(seed), timeout, log)

    class ConcurrentExecutor(executor):
        def __init__(self, fn, *args, **kwargs):
            super().__init__(fn, *args, **kwargs)
            self.fn = _Programs(fn, builder, options)

    hooks = _hooks(builder)
    for name, hook in hooks.items():
        setattr(builder, name, hook)
    interpreter.GridExecutor = ConcurrentExecutor
    try:
        yield log
    finally:
        interpreter.GridExecutor = executor
        for name in hooks:
            delattr(builder, name)
