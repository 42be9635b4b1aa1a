"""How many threads NumPy's BLAS may use while a model trains.

BLAS libraries start one thread per core. That pays for large products on an idle machine and
costs 2-30x when the cores are shared: with other MPI ranks, with another busy process, or
for products too small to split (BENCHMARKS.md, "BLAS threads"). `blas_threads_for` sets, for
the length of a `with` block:

- the user's own setting, whenever there is one: `XPNET_BLAS_THREADS`, `OPENBLAS_NUM_THREADS`,
  `OMP_NUM_THREADS`, `MKL_NUM_THREADS`, `BLIS_NUM_THREADS`, an explicit `threads=`, or a
  `threadpoolctl` limit already in force around the call; an enclosing `blas_threads_for`
  block (the CLI's, around `fit`) is kept too;
- else 1 thread when a step's products are small (batch × the multiply-adds of one sample's forward
  pass, `macs_per_sample`, below `SMALL_STEP_MACS`);
- else the usable cores divided by the MPI ranks on this machine, less the cores other
  processes keep busy (counted once, when the block starts), at least 1.

With MKL as the BLAS (`xpnet[mkl]`, backend/_cblas.py) the same limit reaches MKL's pool through
threadpoolctl; MKL's threading layer is fixed when it loads (sequential where the setting above is
1 thread), and a sequential MKL stays at 1 thread whatever is asked later.

The thread count can change float32 results in the last bits, so a run is repeatable only
with the same thread count: set `XPNET_BLAS_THREADS` (or `xpnet train --threads`). A count
above the usable CPUs (the affinity mask) is lowered to them, with a warning. Results also
depend on the CPU model and the BLAS build: a run repeats bit for bit only on the same machine
type with the same NumPy/BLAS.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

XPNET_VAR = "XPNET_BLAS_THREADS"
USER_VARS = (XPNET_VAR, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
_LOCAL_RANK_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")
# Below this many multiply-adds per forward pass a second thread gained < 1.12x on 2 cores
# (model B at batch 32 and 64: 3.3M and 6.5M); model A at batch 32 (8.5M) gained 1.28x.
SMALL_STEP_MACS = 4_000_000


@dataclass(frozen=True)
class Decision:
    """threads: the BLAS thread count to set, or None to leave the BLAS as it is; reason: why."""

    threads: int | None
    reason: str

    def __str__(self) -> str:
        n = "unchanged" if self.threads is None else f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"BLAS {n} ({self.reason})"


_ACTIVE: ContextVar[Decision | None] = ContextVar("xpnet_blas_decision", default=None)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_ranks(comm_size: int, env: Mapping[str, str] | None = None) -> int:
    """MPI ranks on this machine: the launcher's local size when it says, else all `comm_size`."""
    env = os.environ if env is None else env
    for var in _LOCAL_RANK_VARS:
        if env.get(var, "").isdigit() and int(env[var]) > 0:
            return min(int(env[var]), comm_size)
    return comm_size


def _running(task: Path) -> int:
    """1 when the thread /proc/self/task/<id> is runnable now (state R), else 0."""
    try:
        return 1 if (task / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "R" else 0
    except (OSError, IndexError):  # the thread ended meanwhile
        return 0


def busy_elsewhere(samples: int = 3, interval: float = 0.002) -> int:
    """Runnable threads outside this process (Linux; 0 elsewhere): the least of a few quick looks.

    /proc/loadavg's 4th field counts the runnable threads on the machine; this process's own
    (the reading thread, spinning BLAS threads) are taken off. The least of a few samples
    ignores short-lived processes.
    """
    counts = []
    for i in range(samples):
        try:
            total = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
            own = sum(_running(task) for task in Path("/proc/self/task").iterdir())
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, total - max(own, 1)))
        if i + 1 < samples:
            time.sleep(interval)
    return min(counts)


def macs_per_sample(model: Any) -> int:
    """Multiply-adds of one sample's forward pass: Σ in·out over 2-D weights, kh·kw·in·out·oh·ow over conv kernels."""
    total = 0
    for layer in getattr(model, "leaf_layers", model.layers):
        for s in layer.param_specs():
            if len(s.shape) == 2:
                total += s.shape[0] * s.shape[1]
            elif len(s.shape) == 4 and layer.output_shape is not None:  # a conv kernel slides over every output pixel
                total += math.prod(s.shape) * math.prod(layer.output_shape[:-1])
    return total


def user_setting(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(variable, value) of the first thread setting the user made in the environment, else None."""
    env = os.environ if env is None else env
    for var in USER_VARS:
        if env.get(var, "").strip():
            return var, env[var].strip()
    return None


def parse_threads(text: str, source: str) -> int:
    """A thread count ≥ 1 from text; ValueError naming `source` otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{source} must be a positive number of threads, received {text!r}")
    return value


def choose_threads(macs: int, batch_size: int, cores: int, ranks: int = 1, busy: int = 0) -> Decision:
    """The policy itself, without looking at the machine.

    macs: multiply-adds per sample (`macs_per_sample`); cores: usable cores; ranks: MPI ranks on
    this machine; busy: runnable threads of other processes (`busy_elsewhere`).
    """
    if macs * batch_size < SMALL_STEP_MACS:
        return Decision(1, f"products of {macs * batch_size / 1e6:.1f}M multiply-adds gain nothing from more")
    share = max(1, cores // max(1, ranks))
    free = max(1, (cores - busy) // max(1, ranks))
    why = f"{cores} core{'s' if cores != 1 else ''}"
    if ranks > 1:
        why += f" / {ranks} ranks"
    if free < share:
        why += f", {busy} busy elsewhere"
    return Decision(min(share, free), why)


def _capped(wanted: int, source: str, reason: str) -> Decision:
    """The user's count, but no more than the usable CPUs: more threads than cores spin against each other
    (8 on 2 cores made `xpnet train --quick` 30x slower), with a one-line warning when it is lowered."""
    cores = usable_cores()
    if wanted <= cores:
        return Decision(wanted, reason)
    warnings.warn(
        f"{source}={wanted} is more than the {cores} usable CPU{'s' if cores != 1 else ''}; using {cores} BLAS "
        f"thread{'s' if cores != 1 else ''}",
        RuntimeWarning,
        stacklevel=4,
    )
    return Decision(cores, f"{reason}, capped at the {cores} usable CPUs")


def current_threads() -> int | None:
    """Threads of the loaded BLAS pools now (the smallest), or None when threadpoolctl finds none."""
    from threadpoolctl import threadpool_info

    # a sequential MKL reports 1 thread, which no limit can change: not a limit someone set
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas" and p.get("threading_layer") != "sequential"]
    counts = [p["num_threads"] for p in pools]
    return min(counts) if counts else None


def decide(macs: int, batch_size: int, comm_size: int = 1, threads: int | None = None) -> Decision:
    """The decision for this process now: an explicit `threads`, the user's setting, or the policy."""
    if threads is not None:
        return _capped(parse_threads(str(threads), "threads"), "threads", "set explicitly")
    outer = _ACTIVE.get()
    if outer is not None:  # an enclosing block (the CLI around fit) decided already
        return Decision(None, f"kept from the enclosing block: {outer}")
    user = user_setting()
    if user is not None:
        var, value = user
        if var == XPNET_VAR:
            return _capped(parse_threads(value, var), var, f"{var}={value}")
        return Decision(None, f"{var}={value} is the user's")
    cores = usable_cores()
    current = current_threads()
    if current is None:
        return Decision(None, "no BLAS pool found")
    if current < cores:  # someone (threadpoolctl, the BLAS's own build) limited it already: theirs
        return Decision(None, f"already limited to {current}")
    ranks = local_ranks(comm_size)
    if macs * batch_size < SMALL_STEP_MACS or cores // max(1, ranks) <= 1:
        return choose_threads(macs, batch_size, cores, ranks)
    return choose_threads(macs, batch_size, cores, ranks, busy_elsewhere())


@contextmanager
def blas_threads_for(macs: int, batch_size: int, comm_size: int = 1, threads: int | None = None) -> Iterator[Decision]:
    """Limit NumPy's BLAS threads for the block as `decide` says; yields the Decision."""
    decision = decide(macs, batch_size, comm_size, threads)
    token = _ACTIVE.set(decision if _ACTIVE.get() is None else _ACTIVE.get())
    try:
        if decision.threads is None:
            yield decision
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=decision.threads, user_api="blas"):
            yield decision
    finally:
        _ACTIVE.reset(token)
