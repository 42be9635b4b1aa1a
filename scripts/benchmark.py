#!/usr/bin/env python
"""Benchmark xpnet's training and inference against the GEMM floor and against peers, in one run.

For each workload, on the same data and shapes, this measures

* the *floor*: only the matrix products of one training epoch (per Dense layer and step: the
  forward x@W, dW = x.T@du and dX = du@W.T), timed alone with preallocated outputs. Two floors
  are reported: "3 GEMM/layer" and "no first dX" (the first layer needs no input gradient);
* xpnet: seconds per epoch (median over repeats, after a warm-up), ms per step, peak memory of
  `fit`, and inference images/s over the 10,000 test images at batch 32 and at batch 10,000;
* xpnet beside itself (--variants): eager (jit_compile=False), the replayed step (jit_compile=True)
  and the default without numba's kernels (as XPNET_JIT=0 gives), each a row of its own;
* peers when installed: PyTorch eager (a plain training loop, same architecture, optimizer,
  batch size and thread count), JAX (`lax.scan` over an epoch, and `jit` per step; their first,
  compiling epoch reported apart) and Keras.

Contenders are interleaved within each repeat (in a rotating order) and the median of the
repeats is reported; ratios are medians of per-repeat ratios, so slow spells of a noisy machine
hit everyone alike. The run first waits (--wait-idle) for other processes to leave the CPUs,
and a repeat during which other processes took more than 10% of the CPUs is thrown away and
run again (--redo). Times are printed as ratios to the floor and to each peer, and the
issue's targets are marked met/missed. --threads N pins the whole run to N cores before any peer
is imported (a thread count alone does not keep XLA to N cores) and gives every library N threads;
each table reports every contender's CPU seconds ÷ wall seconds, the cores it actually kept busy.

    python scripts/benchmark.py                      # everything, numpy backend (~2 min on an idle 2-core box)
    python scripts/benchmark.py --quick              # a smoke run (subset of the data, 3 repeats)
    python scripts/benchmark.py --backend cupy       # on a GPU: CuPy floor + xpnet on CuPy + torch CUDA
    python -m gpusim.count -- scripts/benchmark.py --backend cupy   # on the GPU stand-in: launches per step only
    python scripts/benchmark.py --workloads A,infer --repeats 9 --json /tmp/bench.json
    python scripts/benchmark.py --workloads A,B,lenet,infer --threads 1 --train-size 20000 --repeats 5   # issue 24
    python scripts/benchmark.py --profile --workloads A --repeats 1   # + pyinstrument flat profile of A
    git worktree add /tmp/xpnet-old <rev>
    python scripts/benchmark.py --baseline /tmp/xpnet-old --peers ''   # this code against <rev>, interleaved
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

import xpnet
from xpnet.datasets import fashion_mnist

N_TRAIN_FULL = 55_000
N_TEST = 10_000
N_CLASSES = 10
IN = 784


# --------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    hidden: tuple[int, ...]
    dropout: float | None  # after the first hidden layer
    optimizer: str  # "sgd" (lr 0.01) or "adam" (lr 0.001, Keras defaults)
    batch: int
    floor_target: float | None  # xpnet / floor(3 GEMM/layer) must be <= this
    peer_target: float | None = None  # xpnet / PyTorch must be <= this

    @property
    def dims(self) -> list[int]:
        return [IN, *self.hidden, N_CLASSES]


WORKLOADS: dict[str, Workload] = {
    "A": Workload("A", "784-300-100-10 relu/softmax, SGD 0.01, batch 32", (300, 100), None, "sgd", 32, 1.25, 0.6),
    "B": Workload("B", "784-128-Dropout 0.2-10, Adam, batch 1000", (128,), 0.2, "adam", 1000, 1.2),
    "A1024": Workload("A1024", "784-300-100-10, SGD 0.01, batch 1024", (300, 100), None, "sgd", 1024, 1.2),
}
INFER_BATCHES = (32, 10_000)


# --------------------------------------------------------------------------------------- environment
@dataclass
class Env:
    backend: str
    xp: Any
    sync: Callable[[], None]
    blas_threads: int
    blas_desc: str
    torch: Any = None
    torch_device: str = "cpu"
    torch_note: str = ""
    keras: Any = None
    keras_note: str = ""
    jax: Any = None
    jax_note: str = ""
    threads: int | None = None  # --threads: one count for every contender's BLAS / intra-op pool
    cores: list[int] | None = None  # --threads: the cores the whole run is pinned to (empty: unsupported or refused)
    variants: list[str] = field(default_factory=list)  # xpnet rows beside the default (VARIANTS)
    notes: list[str] = field(default_factory=list)
    _limit: Any = None  # threadpoolctl's limiter under --threads, kept for the whole run


def blas_threads() -> tuple[int, str]:
    """Threads NumPy's BLAS uses (threadpoolctl when available, else os.cpu_count())."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1, "threadpoolctl absent: assumed os.cpu_count()"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    pools.sort(key=lambda p: "numpy" not in p.get("filepath", ""))
    if not pools:
        return os.cpu_count() or 1, "no BLAS pool found by threadpoolctl: assumed os.cpu_count()"
    p = pools[0]
    return int(p["num_threads"]), f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '?')})"


def numpy_blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pin_to_cores(n: int) -> list[int]:
    """Pin this process to its n lowest usable cores: every thread it has now, so every thread and child
    process started later too (they inherit the affinity of the thread that starts them).

    A thread-count setting alone does not hold a library to n cores: XLA, even with a one-thread
    intra-op pool, runs independent operations of one step concurrently on every core. Threads made
    before the call (OpenBLAS's pool, made when NumPy is imported) are pinned one by one, as
    sched_setaffinity(0) pins only the calling thread. Returns the cores, or [] where the platform
    has no sched_setaffinity or refuses it for the calling thread (nothing pinned; the reason on
    stderr); raises ValueError for n < 1 or more than the usable cores.
    """
    if not hasattr(os, "sched_setaffinity"):
        return []
    usable = sorted(os.sched_getaffinity(0))
    if not 1 <= n <= len(usable):
        raise ValueError(f"cannot pin to {n} cores: this process may use {len(usable)} ({usable})")
    cores = usable[:n]
    try:  # the calling thread first: a sandbox or cpuset that refuses it leaves the whole run unpinned
        os.sched_setaffinity(0, cores)
    except OSError as e:
        print(f"not pinned to {n} core(s): {e}", file=sys.stderr)
        return []
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # the thread ended since the listing
            os.sched_setaffinity(tid, cores)
    return cores


def cpu_seconds() -> float:
    """CPU seconds used so far by this process's threads and by its children that have been waited for."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def git_state() -> str:
    """Commit of the xpnet checkout, and whether xpnet/ has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(xpnet.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "xpnet"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "not a git checkout"
    return head.stdout.strip() + (" + uncommitted changes in xpnet/" if dirty.stdout.strip() else "")


class CpuWatch:
    """Share of the machine's CPU time taken by *other* processes (Linux /proc/stat minus our own usage,
    which includes the child processes we waited for: scripts/bench_e2e.py times whole processes)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.t0 = self._snap()

    def _snap(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                v = [float(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        own = (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * self.tick
        return sum(v), v[3] + v[4], own  # total, idle + iowait, our own CPU (all in ticks)

    def others(self) -> float | None:
        """Fraction of all CPUs used by other processes (or stolen by the hypervisor) since the last call."""
        t1 = self._snap()
        t0, self.t0 = self.t0, t1
        if t0 is None or t1 is None or t1[0] <= t0[0]:
            return None
        busy = (t1[0] - t0[0]) - (t1[1] - t0[1]) - (t1[2] - t0[2])
        return max(0.0, busy / (t1[0] - t0[0]))


BUSY = 0.10  # other processes using more than this share of all CPUs make a measurement suspect


def wait_for_idle(max_wait: float) -> float | None:
    """Wait (up to max_wait seconds) until other processes use < BUSY of the CPUs; return their last share."""
    watch = CpuWatch()
    time.sleep(1.0)
    share = watch.others()
    deadline = time.monotonic() + max_wait
    while share is not None and share > BUSY and time.monotonic() < deadline:
        tqdm.write(f"machine busy: other processes use {share:.0%} of the CPUs; waiting...", file=sys.stderr)
        time.sleep(4.0)
        watch.others()
        time.sleep(1.0)
        share = watch.others()
    return share


def make_env(args: argparse.Namespace, pin: bool = True) -> Env:
    """The run's settings; with --threads it first pins the process to that many cores (`pin`), then
    sets every library's thread count and imports the peers."""
    if args.backend == "cupy":
        try:
            ops = xpnet.get_backend("cupy")
        except xpnet.BackendUnavailableError as e:
            sys.exit(f"--backend cupy: {e}")
        import cupy

        env = Env("cupy", cupy, ops.synchronize, 0, "")
    else:
        env = Env("numpy", np, lambda: None, 0, "")
    if args.threads is not None:
        env.cores = pin_to_cores(args.threads) if pin else None
        # xpnet's thread policy defers to XPNET_BLAS_THREADS inside fit; the floors and predict see the limit
        os.environ["XPNET_BLAS_THREADS"] = str(args.threads)
        from threadpoolctl import threadpool_limits

        env.threads, env._limit = args.threads, threadpool_limits(limits=args.threads, user_api="blas")
    env.blas_threads, env.blas_desc = blas_threads()
    env.variants = [v for v in args.variants if v != "no-numba" or env.backend == "numpy"]
    peers = {p.strip().lower() for p in args.peers.split(",") if p.strip()}
    if "torch" in peers:
        try:
            import torch

            env.torch = torch
            if env.backend == "cupy":
                if torch.cuda.is_available():
                    env.torch_device = "cuda"
                else:
                    env.torch_note = "PyTorch has no CUDA here: the peer runs on CPU (ratios compare GPU with CPU)"
            torch.set_num_threads(env.blas_threads)
        except ImportError:
            env.torch_note = "PyTorch not installed: skipped (pip install torch)"
    else:
        env.torch_note = "PyTorch skipped (--peers)"
    if "keras" in peers:
        try:
            import keras

            env.keras = keras
        except ImportError:
            env.keras_note = "Keras not installed: skipped"
    else:
        env.keras_note = "Keras skipped (--peers)"
    if "jax" in peers:
        if env.blas_threads == 1 and "XLA_FLAGS" not in os.environ:  # XLA's own pool, as BLAS is held to one
            os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        try:
            import jax

            env.jax = jax
            pool = "1 thread (XLA_FLAGS)" if env.blas_threads == 1 else "XLA's default pool (every usable core)"
            env.jax_note = (
                f"JAX {jax.__version__} on {jax.default_backend()}, {pool}: SGD and Adam written out (no optax)"
            )
        except ImportError:
            env.jax_note = "JAX not installed: skipped (pip install jax)"
    else:
        env.jax_note = "JAX skipped (--peers)"
    return env


# --------------------------------------------------------------------------------------- data
@dataclass
class Data:
    xtr: np.ndarray  # (n, 784) float32 in [0, 1]
    ytr: np.ndarray  # (n,) int32
    xte: np.ndarray  # (10000, 784) float32
    yte: np.ndarray
    source: str

    @property
    def nbytes(self) -> int:
        return int(self.xtr.nbytes + self.ytr.nbytes)


def load_data(train_size: int, download: bool) -> Data:
    """Fashion-MNIST (validation = the first 5,000 training images, left out) /255, else random data."""
    train_size = min(train_size, N_TRAIN_FULL)
    try:
        (x, y), (xt, yt) = fashion_mnist.load_data(download=download)
        xtr = x[5000 : 5000 + train_size].reshape(-1, IN).astype(np.float32)
        xtr *= np.float32(1 / 255)
        xte = xt.reshape(-1, IN).astype(np.float32)
        xte *= np.float32(1 / 255)
        del x, xt
        return Data(xtr, y[5000 : 5000 + train_size].astype(np.int32), xte, yt.astype(np.int32), "Fashion-MNIST")
    except Exception as e:  # not found (download disabled) or unreadable
        why = str(e).splitlines()[0].split(" Searched")[0] if str(e) else ""
        rng = np.random.default_rng(0)
        return Data(
            rng.random((train_size, IN), dtype=np.float32),
            rng.integers(0, N_CLASSES, train_size).astype(np.int32),
            rng.random((N_TEST, IN), dtype=np.float32),
            rng.integers(0, N_CLASSES, N_TEST).astype(np.int32),
            f"random data of the same shapes (Fashion-MNIST unavailable: {type(e).__name__}: {why})",
        )


# --------------------------------------------------------------------------------------- contenders
class Contender:
    """Something timed per epoch (training) or per pass over the test set (inference)."""

    name = "?"
    kind = "peer"  # "floor", "xpnet" or "peer"
    note = ""

    def train_epochs(self, k: int) -> float:
        """Run k epochs; return seconds per epoch."""
        raise NotImplementedError

    def infer(self, batch: int) -> float:
        """Predict the 10,000 test images at `batch`; return seconds."""
        raise NotImplementedError

    def fit_memory(self) -> dict[str, Any]:
        return {}

    def last_logs(self) -> dict[str, float]:
        return {}


class GemmFloor(Contender):
    """The GEMMs of one epoch (or of one inference pass), nothing else, into preallocated outputs.

    Per Dense layer and step: u = x@W, dW = x.T@du and (unless `skip_first_dx` and it is the first
    layer) dX = du@W.T, whose result is the next layer down's du. Inputs are contiguous row blocks
    of the training images; values never matter to a GEMM's speed (no NaN/denormals arise here).
    """

    kind = "floor"

    def __init__(
        self,
        name: str,
        xp: Any,
        sync: Callable[[], None],
        dims: list[int],
        batch: int,
        x: Any,
        skip_first_dx: bool,
        x_test: Any = None,
        blas: Any = None,
    ) -> None:
        self.name, self.xp, self.sync, self.dims, self.batch = name, xp, sync, dims, batch
        self.skip, self.x, self.x_test = skip_first_dx, x, x_test
        # a `_cblas.Blas` other than NumPy's own: its GEMMs bound once to the buffers (as xpnet's replay
        # binds them), so the floor holds no Python check per product
        self.blas = blas
        self._bound: dict[str, list[Callable[[], object]]] = {}
        self.rng = np.random.default_rng(1)
        self.W = [
            xp.asarray((self.rng.standard_normal((i, o)) * math.sqrt(2.0 / (i + o))).astype(np.float32))
            for i, o in itertools.pairwise(dims)
        ]
        self.dW = [xp.empty_like(w) for w in self.W]
        self._bufs: dict[int, tuple[list[Any], list[Any], Any]] = {}

    def _buffers(self, b: int) -> tuple[list[Any], list[Any], Any]:
        bufs = self._bufs.get(b)
        if bufs is None:  # allocated on first use (the warm-up), never inside a timed loop afterwards
            xp, d = self.xp, self.dims
            u = [xp.empty((b, o), dtype=xp.float32) for o in d[1:]]
            dx = [xp.empty((b, i), dtype=xp.float32) for i in d[:-1]]
            top = xp.asarray((self.rng.standard_normal((b, d[-1])) * 0.01).astype(np.float32))
            bufs = self._bufs[b] = (u, dx, top)
        return bufs

    def _epoch_calls(self, x: Any, batch: int, forward_only: bool) -> list[Callable[[], object]]:
        """The epoch's products (those `train_epochs` or `infer` make) as calls bound by `self.blas`."""
        calls: list[Callable[[], object]] = []
        bind = self.blas.bound_matmul
        for lo in range(0, x.shape[0], batch):
            xb = x[lo : lo + batch]
            u, dx, du = self._buffers(xb.shape[0])
            a = xb
            for w, out in zip(self.W, u, strict=True):
                calls.append(bind(a, w, out))
                a = out
            for i in range(len(self.W) - 1, -1, -1) if not forward_only else ():
                calls.append(bind((xb if i == 0 else u[i - 1]).T, du, self.dW[i]))
                if i > 0 or not self.skip:
                    calls.append(bind(du, self.W[i].T, dx[i]))
                    du = dx[i]
        return calls

    def _run_bound(self, key: str, x: Any, batch: int, forward_only: bool) -> float:
        calls = self._bound.get(key)
        if calls is None:
            calls = self._bound[key] = self._epoch_calls(x, batch, forward_only)
        t0 = time.perf_counter()
        for f in calls:
            f()
        return time.perf_counter() - t0

    def train_epochs(self, k: int) -> float:
        if self.blas is not None:
            return sum(self._run_bound("train", self.x, self.batch, False) for _ in range(k)) / k
        W, dW, x, b, skip = self.W, self.dW, self.x, self.batch, self.skip
        mm = self.xp.matmul
        n, L = x.shape[0], len(self.W)
        for lo in range(0, n, b):
            self._buffers(min(b, n - lo))
        self.sync()
        t0 = time.perf_counter()
        for _ in range(k):
            for lo in range(0, n, b):
                xb = x[lo : lo + b]
                u, dx, du = self._bufs[xb.shape[0]]
                a = xb
                for w, out in zip(W, u, strict=True):
                    mm(a, w, out=out)
                    a = out
                for i in range(L - 1, -1, -1):
                    mm((xb if i == 0 else u[i - 1]).T, du, out=dW[i])
                    if i > 0 or not skip:
                        mm(du, W[i].T, out=dx[i])
                        du = dx[i]
        self.sync()
        return (time.perf_counter() - t0) / k

    def infer(self, batch: int) -> float:
        if self.blas is not None:
            return self._run_bound(f"infer {batch}", self.x_test, batch, True)
        x, W, mm = self.x_test, self.W, self.xp.matmul
        n = x.shape[0]
        for lo in range(0, n, batch):
            self._buffers(min(batch, n - lo))
        self.sync()
        t0 = time.perf_counter()
        for lo in range(0, n, batch):
            xb = x[lo : lo + batch]
            a = xb
            for w, out in zip(W, self._bufs[xb.shape[0]][0], strict=True):
                mm(a, w, out=out)
                a = out
        self.sync()
        return time.perf_counter() - t0


class _EpochTimerMixin:
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.logs: dict[str, float] = {}

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.times.append(time.perf_counter() - self._t0)
        self.logs = dict(logs or {})


def _epoch_timer(mod: Any = xpnet) -> Any:
    """An epoch timer that is a Callback of `mod` (another checkout's xpnet checks for its own class)."""
    return type("EpochTimer", (_EpochTimerMixin, mod.Callback), {})()


BASELINE: Any = None  # xpnet of another checkout (--baseline), timed as one more peer


def load_baseline(path: str) -> Any:
    """The xpnet package of the checkout at `path` (e.g. a git worktree of an older commit), as `xpnet_baseline`."""
    import importlib.util
    from pathlib import Path

    init = Path(path) / "xpnet" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline: {init} not found; give the folder of another xpnet checkout")
    spec = importlib.util.spec_from_file_location("xpnet_baseline", init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["xpnet_baseline"] = mod
    spec.loader.exec_module(mod)
    rev = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    mod.revision = rev.stdout.strip() or path
    return mod


def build_xpnet(
    wl: Workload, backend: Any, seed: int = 0, mod: Any = xpnet, jit: bool | None = None
) -> xpnet.Sequential:
    """backend: a name or an Ops; jit: compile(jit_compile=...) (True: the recorded step replayed on NumPy),
    None: the default."""
    layers: list[Any] = [mod.Dense(wl.hidden[0], "relu", input_shape=(IN,))]
    if wl.dropout:
        layers.append(mod.Dropout(wl.dropout))
    layers += [mod.Dense(h, "relu") for h in wl.hidden[1:]]
    layers.append(mod.Dense(N_CLASSES, "softmax"))
    model = mod.Sequential(layers, seed=seed)
    opt = mod.optimizers.SGD(0.01) if wl.optimizer == "sgd" else mod.optimizers.Adam(0.001)
    extra = {} if jit is None else {"jit_compile": jit}
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend, **extra)
    return model


class XpnetContender(Contender):
    """`model.fit(...)`; an epoch is timed from on_epoch_begin to on_epoch_end (the fit-call overhead apart)."""

    name = "xpnet"
    kind = "xpnet"

    def __init__(
        self, wl: Workload, data: Data, env: Env, model: xpnet.Sequential | None = None, mod: Any = None
    ) -> None:
        self.wl, self.data, self.env = wl, data, env
        if mod is not None:  # another checkout's xpnet, reported as a peer: "× xpnet <rev>" columns
            self.name, self.kind = f"xpnet {mod.revision}", "peer"
        self.model = model if model is not None else build_xpnet(wl, env.backend, mod=mod or xpnet)
        # On CuPy pass the training images already on the device (fit passes native arrays through),
        # so the per-call host->device upload is not repeated; the memory measurement passes host data.
        self.x = data.xtr if env.backend == "numpy" else self.model.ops.asarray(data.xtr)  # type: ignore[union-attr]
        self.fit_overheads: list[float] = []
        self._logs: dict[str, float] = {}
        self._mod = mod or xpnet

    def train_epochs(self, k: int) -> float:
        cb = _epoch_timer(self._mod)
        t0 = time.perf_counter()
        self.model.fit(self.x, self.data.ytr, batch_size=self.wl.batch, epochs=k, verbose=0, callbacks=[cb])
        wall = time.perf_counter() - t0
        self.fit_overheads.append(wall - sum(cb.times))
        self._logs = cb.logs
        return sum(cb.times) / k

    def last_logs(self) -> dict[str, float]:
        return self._logs

    def infer(self, batch: int) -> float:
        t0 = time.perf_counter()
        self.model.predict(self.data.xte, batch_size=batch)
        return time.perf_counter() - t0

    def fit_memory(self) -> dict[str, Any]:
        """Peak memory allocated by one fit epoch on the user's host arrays, beyond what existed before."""
        d, env = self.data, self.env
        gc.collect()
        if env.backend == "cupy":
            import cupy

            pool = cupy.get_default_memory_pool()
            env.sync()
            pool.free_all_blocks()
            before = pool.used_bytes()
            self.model.fit(d.xtr, d.ytr, batch_size=self.wl.batch, epochs=1, verbose=0)
            env.sync()
            # freed blocks stay cached in the pool, so its total after fit bounds fit's device peak
            peak = pool.total_bytes() - before
            return {
                "method": "device: cupy pool total_bytes after fit - used before, host arrays in, so it includes "
                "fit's upload of the dataset",
                "peak_bytes": peak,
                "includes_dataset": True,
            }
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        self.model.fit(d.xtr, d.ytr, batch_size=self.wl.batch, epochs=1, verbose=0)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        # (RSS high-water deltas are no use here: glibc reuses heap pages freed earlier, hiding the peak)
        return {"method": "tracemalloc peak during fit, NumPy allocations", "peak_bytes": peak}


# xpnet rows beside the default one: name, compile's jit_compile (None: its default), numba's kernels, the
# BLAS of its GEMMs (None: the default's, as XPNET_BLAS says; a row for the default's own BLAS is left out)
VARIANTS: dict[str, tuple[str, bool | None, bool, str | None]] = {
    "eager": ("xpnet eager (jit_compile=False)", False, True, None),
    "replay": ("xpnet replay (jit_compile=True)", True, True, None),
    "no-numba": ("xpnet without numba (XPNET_JIT=0)", None, False, None),
    "openblas": ("xpnet OpenBLAS (XPNET_BLAS=openblas)", None, True, "openblas"),
    "mkl": ("xpnet MKL (XPNET_BLAS=mkl)", None, True, "mkl"),
}


def default_blas(env: Env) -> Any:
    """The `_cblas.Blas` of the default xpnet row's GEMMs (NumPy backend), else None."""
    return getattr(xpnet.get_backend(env.backend), "cblas", None)


def blas_of(model: Any) -> str:
    """ "mkl" or "numpy": which floor a model's GEMMs compare with (CuPy models: "numpy", unused)."""
    return "mkl" if getattr(getattr(model.ops, "cblas", None), "name", None) == "mkl" else "numpy"


def numba_kernels(env: Env) -> bool:
    """Whether the default xpnet model of this run uses numba's kernels (installed, XPNET_JIT not 0)."""
    return getattr(xpnet.get_backend(env.backend), "kernels", None) is not None


def variant_models(
    env: Env, build: Callable[[Any, bool | None], Any], probe: Callable[[Any], None], what: str
) -> dict[str, Any]:
    """Row name -> compiled model for each of env.variants; `build(backend, jit_compile)` makes one.

    A replay variant first runs `probe(model)` (a few steps): a step that cannot be recorded is
    left out, and one that silently runs eagerly is named, with the reason, in the report's notes.
    """
    out: dict[str, Any] = {}
    for v in env.variants:
        name, jit, numba, blas = VARIANTS[v]
        backend: Any = env.backend
        if blas is not None:
            from xpnet.backend import _cblas
            from xpnet.backend.numpy_ops import NumpyOps

            own = default_blas(env)
            if own is None or own.name == blas:
                why = "a NumPy backend's choice" if own is None else f"the default row already runs {blas}"
                env.notes.append(f"{what}: no '{name}' row: {why}")
                continue
            if blas == "mkl" and _cblas.mkl_path() is None:
                env.notes.append(f"{what}: no '{name}' row: MKL is not installed (pip install 'xpnet[mkl]')")
                continue
            backend = NumpyOps(blas=blas)
        if not numba:
            if not numba_kernels(env):
                env.notes.append(f"{what}: no '{name}' row: the default row already runs without numba")
                continue
            from xpnet.backend.numpy_ops import NumpyOps

            backend = NumpyOps(jit=False)  # what XPNET_JIT=0 gives, for this model only
        model = build(backend, jit)
        if jit:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    probe(model)
                except (ValueError, RuntimeError) as e:
                    env.notes.append(f"{what}: no '{name}' row: {e}")
                    continue
            eager = [w for w in caught if "eagerly" in str(w.message)]
            if eager:
                env.notes.append(f"{what}: '{name}' ran eagerly: {eager[0].message}")
        out[name] = model
    return out


def step_route(model: Any) -> str:
    """How the model's plan runs a training step (its capture decision), in its own words."""
    try:
        return str(model.plan.capture_reason)
    except Exception as e:  # another checkout's model, or a plan that cannot be made: say so, don't fail the run
        return f"unknown ({type(e).__name__})"


class TorchContender(Contender):
    """PyTorch eager, a plain training loop: same layers (Glorot-uniform, zero bias), optimizer, batch."""

    name = "PyTorch"

    def __init__(self, wl: Workload, data: Data, env: Env) -> None:
        torch = env.torch
        self.torch, self.wl, self.data, self.dev = torch, wl, data, torch.device(env.torch_device)
        self.name = f"PyTorch {torch.__version__.split('+')[0]} {env.torch_device}"
        torch.manual_seed(0)
        nn = torch.nn
        dims = wl.dims
        mods: list[Any] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            lin = nn.Linear(a, b)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            mods.append(lin)
            if i < len(dims) - 2:
                mods.append(nn.ReLU())
                if i == 0 and wl.dropout:
                    mods.append(nn.Dropout(wl.dropout))
        self.model = nn.Sequential(*mods).to(self.dev)
        params = self.model.parameters()
        self.opt = (
            torch.optim.SGD(params, lr=0.01) if wl.optimizer == "sgd" else torch.optim.Adam(params, lr=1e-3, eps=1e-7)
        )
        self.X = torch.from_numpy(data.xtr).to(self.dev)
        self.Y = torch.from_numpy(data.ytr.astype(np.int64)).to(self.dev)
        self.gen = torch.Generator().manual_seed(0)
        self._logs: dict[str, float] = {}

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def train_epochs(self, k: int) -> float:
        torch, model, opt, X, Y, b = self.torch, self.model, self.opt, self.X, self.Y, self.wl.batch
        F = torch.nn.functional
        n = X.shape[0]
        self._sync()
        t0 = time.perf_counter()
        for _ in range(k):
            model.train()
            perm = torch.randperm(n, generator=self.gen).to(self.dev)
            loss_sum = torch.zeros((), device=self.dev)
            correct = torch.zeros((), dtype=torch.int64, device=self.dev)
            for lo in range(0, n, b):
                idx = perm[lo : lo + b]
                xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():  # the same running loss / accuracy sums xpnet keeps
                    loss_sum += loss.detach() * xb.shape[0]
                    correct += (out.argmax(1) == yb).sum()
            self._logs = {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}  # one sync per epoch
        self._sync()
        return (time.perf_counter() - t0) / k

    def last_logs(self) -> dict[str, float]:
        return self._logs

    def infer(self, batch: int) -> float:
        torch, model = self.torch, self.model
        model.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.from_numpy(self.data.xte).to(self.dev)
            n = x.shape[0]
            out = torch.empty((n, N_CLASSES), device=self.dev)
            for lo in range(0, n, batch):
                out[lo : lo + batch] = torch.softmax(model(x[lo : lo + batch]), dim=1)
            out.cpu().numpy()
        self._sync()
        return time.perf_counter() - t0

    def fit_memory(self) -> dict[str, Any]:
        gc.collect()
        if self.dev.type == "cuda":
            torch = self.torch
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.train_epochs(1)
            return {
                "method": "torch.cuda.max_memory_allocated - allocated before (data resident)",
                "peak_bytes": torch.cuda.max_memory_allocated() - base,
            }
        return {}  # CPU: no reliable peak measure for torch allocations (tracemalloc does not see them)


class KerasContender(Contender):
    """Keras `fit` / `predict` with the same model (untested here when Keras is absent)."""

    def __init__(self, wl: Workload, data: Data, env: Env) -> None:
        keras = env.keras
        self.keras, self.wl, self.data = keras, wl, data
        self.name = f"Keras {keras.__version__}"
        layers: list[Any] = [keras.Input((IN,)), keras.layers.Dense(wl.hidden[0], activation="relu")]
        if wl.dropout:
            layers.append(keras.layers.Dropout(wl.dropout))
        layers += [keras.layers.Dense(h, activation="relu") for h in wl.hidden[1:]]
        layers.append(keras.layers.Dense(N_CLASSES, activation="softmax"))
        self.model = keras.Sequential(layers)
        opt = keras.optimizers.SGD(0.01) if wl.optimizer == "sgd" else keras.optimizers.Adam(0.001)
        self.model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        self._logs: dict[str, float] = {}

    def train_epochs(self, k: int) -> float:
        times: list[float] = []
        logs: dict[str, float] = {}

        class Timer(self.keras.callbacks.Callback):  # type: ignore[name-defined,misc]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch: int, lg: Any = None) -> None:
                times.append(time.perf_counter() - self.t0)
                logs.update({k: float(v) for k, v in (lg or {}).items()})

        self.model.fit(self.data.xtr, self.data.ytr, batch_size=self.wl.batch, epochs=k, verbose=0, callbacks=[Timer()])
        self._logs = logs
        return sum(times) / k

    def last_logs(self) -> dict[str, float]:
        return self._logs

    def infer(self, batch: int) -> float:
        t0 = time.perf_counter()
        self.model.predict(self.data.xte, batch_size=batch, verbose=0)
        return time.perf_counter() - t0


class JaxContender(Contender):
    """JAX, compiled: the same layers (Glorot-uniform, zero bias), optimizer and batch, as one `lax.scan`
    over an epoch's batches (`scan=True`, one compiled call per epoch) or one `jit` call per step.

    The last partial batch is dropped (one compiled shape). The first epoch, which compiles, is timed
    apart (`first_epoch_s`); the timed epochs run the compiled code. SGD and Adam (Keras's defaults,
    ε 1e-7) are written out here, so optax is not needed. Dropout draws its mask with `jax.random`.
    """

    def __init__(self, wl: Workload, data: Data, env: Env, scan: bool) -> None:
        jax = env.jax
        jnp = jax.numpy
        self.jax, self.wl, self.scan = jax, wl, scan
        self.name = f"JAX {'lax.scan' if scan else 'jit/step'}"
        rng = np.random.default_rng(0)
        params = []
        for a, b in itertools.pairwise(wl.dims):
            limit = math.sqrt(6.0 / (a + b))
            params.append((jnp.asarray(rng.uniform(-limit, limit, (a, b)).astype(np.float32)), jnp.zeros(b)))
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.state = (params, zeros, zeros, jnp.zeros((), jnp.float32), jax.random.PRNGKey(0))
        self.X, self.Y = jnp.asarray(data.xtr), jnp.asarray(data.ytr)
        self.steps = data.xtr.shape[0] // wl.batch
        self.order = np.random.default_rng(0)
        self.first_epoch_s: float | None = None
        self._logs: dict[str, float] = {}
        step = self._step_fn()
        if scan:

            def epoch(state: Any, perm: Any) -> Any:
                idx = perm.reshape(self.steps, wl.batch)
                return jax.lax.scan(lambda c, i: step(c, self.X[i], self.Y[i]), state, idx)

            self._epoch = jax.jit(epoch)
        else:
            self._step = jax.jit(step)

    def _step_fn(self) -> Callable[..., Any]:
        jax, wl = self.jax, self.wl
        jnp = jax.numpy
        n_layers = len(wl.dims) - 1

        def loss(params: Any, x: Any, y: Any, key: Any) -> Any:
            h = x
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < n_layers - 1:
                    h = jax.nn.relu(h)
                    if i == 0 and wl.dropout:
                        keep = jax.random.bernoulli(key, 1.0 - wl.dropout, h.shape)
                        h = jnp.where(keep, h / (1.0 - wl.dropout), 0.0)
            logp = jax.nn.log_softmax(h)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), h

        grad = jax.value_and_grad(loss, has_aux=True)

        def step(state: Any, x: Any, y: Any) -> Any:
            params, m, v, t, key = state
            key, sub = jax.random.split(key)
            (value, logits), g = grad(params, x, y, sub)
            t = t + 1.0
            if wl.optimizer == "sgd":
                params = jax.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)
            else:
                b1, b2, eps = 0.9, 0.999, 1e-7
                m = jax.tree_util.tree_map(lambda a, d: b1 * a + (1 - b1) * d, m, g)
                v = jax.tree_util.tree_map(lambda a, d: b2 * a + (1 - b2) * d * d, v, g)
                lr_t = 0.001 * jnp.sqrt(1 - b2**t) / (1 - b1**t)
                params = jax.tree_util.tree_map(lambda p, a, c: p - lr_t * a / (jnp.sqrt(c) + eps), params, m, v)
            correct = jnp.sum(jnp.argmax(logits, axis=1) == y)
            return (params, m, v, t, key), (value * x.shape[0], correct)

        return step

    def _one_epoch(self) -> None:
        jnp, b = self.jax.numpy, self.wl.batch
        perm = jnp.asarray(self.order.permutation(self.X.shape[0])[: self.steps * b].astype(np.int32))
        if self.scan:
            self.state, (losses, correct) = self._epoch(self.state, perm)
            loss_sum, right = losses.sum(), correct.sum()
        else:
            loss_sum = right = 0.0
            for k in range(self.steps):
                idx = perm[k * b : (k + 1) * b]
                self.state, (value, correct) = self._step(self.state, self.X[idx], self.Y[idx])
                loss_sum, right = loss_sum + value, right + correct
        n = self.steps * b
        self._logs = {"loss": float(loss_sum) / n, "accuracy": float(right) / n}  # waits for the device

    def train_epochs(self, k: int) -> float:
        if self.first_epoch_s is None:  # compilation and the first epoch, reported apart
            t0 = time.perf_counter()
            self._one_epoch()
            self.first_epoch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(k):
            self._one_epoch()
        return (time.perf_counter() - t0) / k

    def last_logs(self) -> dict[str, float]:
        return self._logs


# --------------------------------------------------------------------------------------- running
def mkl_floor(env: Env) -> Any:
    """MKL's `Blas` where an xpnet row of this run uses it (the default or the mkl variant), else None."""
    from xpnet.backend import _cblas

    own = default_blas(env)
    if own is not None and own.name == "mkl":
        return own
    if env.backend == "numpy" and "mkl" in env.variants and _cblas.mkl_path() is not None:
        return _cblas.library("mkl")
    return None


def floors_for(wl: Workload, data: Data, env: Env, x_dev: Any) -> list[Contender]:
    out: list[Contender] = []
    specs = [("numpy", np, lambda: None, data.xtr, None)]
    if mkl_floor(env) is not None:
        specs.append(("mkl", np, lambda: None, data.xtr, mkl_floor(env)))
    if env.backend == "cupy":
        specs.append(("cupy", env.xp, env.sync, x_dev, None))
    for label, xp, sync, x, blas in specs:
        for skip, tag in ((False, "3 GEMM/layer"), (True, "no first dX")):
            out.append(GemmFloor(f"floor {label} ({tag})", xp, sync, wl.dims, wl.batch, x, skip, blas=blas))
    return out


def peers_for(wl: Workload, data: Data, env: Env, training: bool = True) -> list[Contender]:
    out: list[Contender] = []
    if BASELINE is not None:
        out.append(XpnetContender(wl, data, env, mod=BASELINE))
    if env.torch is not None:
        out.append(TorchContender(wl, data, env))
    if env.keras is not None:
        out.append(KerasContender(wl, data, env))
    if env.jax is not None and training and wl.name in WORKLOADS:  # the dense workloads' training only
        out += [JaxContender(wl, data, env, scan=True), JaxContender(wl, data, env, scan=False)]
    return out


def xpnet_rows(wl: Workload, data: Data, env: Env, models: dict[str, Any]) -> list[Contender]:
    """An XpnetContender for each named model (the variants' rows)."""
    out: list[Contender] = []
    for name, model in models.items():
        c = XpnetContender(wl, data, env, model=model)
        c.name = name
        out.append(c)
    return out


def interleaved(
    contenders: list[Contender],
    fn: Callable[[Contender], Any],
    warmup: int,
    repeats: int,
    desc: str,
    redo: int,
    settle: float = 0.0,
    cores: dict[str, list[float]] | None = None,
) -> tuple[dict[str, list[Any]], list[float], list[float], dict[str, Any]]:
    """Warm each contender up, then run `repeats` rounds, each contender once per round, rotating the order.

    A round during which other processes took more than BUSY of the CPUs is thrown away and run
    again once the machine is idle (at most `redo` times in all); returns the results, the
    other-process CPU shares of the discarded and of the kept rounds, and each contender's first
    (warm-up) result. `cores`, when given, receives per contender and kept round the CPU seconds
    (this process and its waited-for children) ÷ wall seconds of its call: the cores it kept busy.
    """
    results: dict[str, list[Any]] = {c.name: [] for c in contenders}
    first: dict[str, Any] = {}
    discarded: list[float] = []
    kept: list[float] = []
    total = len(contenders) * (warmup + repeats)
    with tqdm(
        total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, mininterval=0.5, disable=None
    ) as bar:
        for _ in range(warmup):
            for c in contenders:
                bar.set_postfix_str(f"warm-up {c.name}", refresh=False)
                first.setdefault(c.name, fn(c))
                bar.update()
        r = 0
        while r < repeats:
            k = r % len(contenders)
            watch = CpuWatch()
            got, used = {}, {}
            for c in contenders[k:] + contenders[:k]:
                bar.set_postfix_str(f"repeat {r + 1}/{repeats} {c.name}", refresh=False)
                gc.collect()
                # OpenBLAS workers spin ~0.1 s after a call and PyTorch's OpenMP threads briefly too:
                # without a pause, whoever runs next shares the 2 cores with the last one's spinners
                time.sleep(settle)
                c0, t0 = cpu_seconds(), time.perf_counter()
                got[c.name] = fn(c)
                used[c.name] = (cpu_seconds() - c0) / max(time.perf_counter() - t0, 1e-9)
                bar.update()
            share = watch.others()
            if share is not None and share > BUSY and len(discarded) < redo:
                discarded.append(share)
                tqdm.write(f"{desc.strip()}: repeat {r + 1} discarded (other processes used {share:.0%} of the CPUs)")
                bar.total += len(contenders)
                wait_for_idle(60.0)
                continue
            for name, v in got.items():
                results[name].append(v)
                if cores is not None:
                    cores.setdefault(name, []).append(used[name])
            if share is not None:
                kept.append(share)
            r += 1
    return results, discarded, kept, first


def summarize(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def paired(a: list[float], b: list[float]) -> float:
    """Median over repeats of a[r] / b[r]: a repeat's contenders ran back to back, so slow spells mostly cancel."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def training_rows(
    contenders: list[Contender], res: dict[str, list[float]], first: dict[str, float], steps: int, scale: float
) -> dict[str, dict[str, Any]]:
    """Per contender: s/epoch median and spread (scaled to 55,000 images), ms/step, raw times, last logs,
    its first epoch as measured (a compiling peer's compilation included), and xpnet's step route."""
    rows: dict[str, dict[str, Any]] = {}
    for c in contenders:
        s = summarize(res[c.name])
        rows[c.name] = {
            "kind": c.kind,
            "s_per_epoch": s["median"] * scale,
            "s_per_epoch_min": s["min"] * scale,
            "s_per_epoch_max": s["max"] * scale,
            "ms_per_step": s["median"] / steps * 1e3,
            "raw_s": res[c.name],
            "last_logs": c.last_logs(),
        }
        compiled = getattr(c, "first_epoch_s", None)  # JAX: its own first epoch, before the warm-up's
        if compiled is not None or c.name in first:
            rows[c.name]["first_epoch_s"] = compiled if compiled is not None else first[c.name]
        if isinstance(c, XpnetContender) and c.kind == "xpnet":
            rows[c.name]["step"] = step_route(c.model)
            rows[c.name]["blas"] = blas_of(c.model)
    return rows


def with_cores(rows: dict[str, dict[str, Any]], cores: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """`rows` with each contender's per-round CPU ÷ wall seconds (from `interleaved`) as "cores_used"."""
    for name, row in rows.items():
        row["cores_used"] = cores.get(name, [])
    return rows


def run_training(wl: Workload, data: Data, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    xp_c = XpnetContender(wl, data, env)
    x_dev = xp_c.x
    b = wl.batch

    def build(backend: Any, jit: bool | None) -> Any:
        return build_xpnet(wl, backend, jit=jit)

    def probe(model: Any) -> None:
        model.fit(data.xtr[: 2 * b], data.ytr[: 2 * b], batch_size=b, epochs=1, verbose=0)

    variants = xpnet_rows(wl, data, env, variant_models(env, build, probe, wl.name))
    contenders: list[Contender] = [*floors_for(wl, data, env, x_dev), xp_c, *variants, *peers_for(wl, data, env)]
    k = args.epochs_per_measure
    cores: dict[str, list[float]] = {}
    res, discarded, kept, first = interleaved(
        contenders,
        lambda c: c.train_epochs(k),
        args.warmup,
        args.repeats,
        f"{wl.name:>5} train",
        args.redo,
        args.settle,
        cores,
    )
    steps = math.ceil(data.xtr.shape[0] / wl.batch)
    scale = math.ceil(N_TRAIN_FULL / wl.batch) / steps  # to a full 55,000-image epoch when --train-size is smaller
    rows = with_cores(training_rows(contenders, res, first, steps, scale), cores)
    out: dict[str, Any] = {
        "workload": wl.title,
        "batch": wl.batch,
        "steps_measured": steps,
        "scale": scale,
        "rows": rows,
        "discarded_repeats": discarded,
        "kept_repeats_other_cpu": kept,
    }
    out["xpnet_fit_call_overhead_s"] = statistics.median(xp_c.fit_overheads) if xp_c.fit_overheads else None
    if not args.no_memory:
        with tqdm(total=2, desc=f"{wl.name:>5} memory", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
            mem = {"dataset_bytes": data.nbytes, "xpnet": xp_c.fit_memory()}
            bar.update()
            torch_c = next((c for c in contenders if isinstance(c, TorchContender)), None)
            if torch_c is not None:
                mem["torch"] = torch_c.fit_memory()
            bar.update()
        out["memory"] = mem
    # reused for inference (stripped before JSON)
    out["_xpnet_models"] = {c.name: c.model for c in (xp_c, *variants) if isinstance(c, XpnetContender)}
    return out


def run_inference(models: dict[str, Any], data: Data, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """predict over the test images at each of INFER_BATCHES: model A's xpnet rows (`models`: trained ones
    by row name; empty: a fresh default model), the forward-GEMM floor and the peers."""
    wl = WORKLOADS["A"]
    xp_rows = xpnet_rows(wl, data, env, models) if models else [XpnetContender(wl, data, env)]
    floors: list[Contender] = [
        GemmFloor("floor numpy (forward GEMMs)", np, lambda: None, wl.dims, 32, data.xtr[:64], True, x_test=data.xte)
    ]
    if mkl_floor(env) is not None:
        mkl = GemmFloor("floor mkl (forward GEMMs)", np, lambda: None, wl.dims, 32, data.xtr[:64], True, data.xte)
        mkl.blas = mkl_floor(env)
        floors.append(mkl)
    if env.backend == "cupy":
        floors.append(
            GemmFloor(
                "floor cupy (forward GEMMs)",
                env.xp,
                env.sync,
                wl.dims,
                32,
                env.xp.asarray(data.xtr[:64]),
                True,
                x_test=env.xp.asarray(data.xte),
            )
        )
    contenders = [*floors, *xp_rows, *peers_for(wl, data, env, training=False)]
    repeats = args.infer_repeats or max(3, 2 * args.repeats)

    def both(c: Contender) -> dict[int, float]:
        return {b: c.infer(b) for b in INFER_BATCHES}

    cores: dict[str, list[float]] = {}
    res, discarded, kept, _ = interleaved(
        contenders, both, args.warmup, repeats, "infer", args.redo, args.settle, cores
    )
    rows: dict[str, dict[str, Any]] = {}
    for c in contenders:
        rows[c.name] = {"kind": c.kind, "cores_used": cores.get(c.name, [])}
        if isinstance(c, XpnetContender) and c.kind == "xpnet":
            rows[c.name]["blas"] = blas_of(c.model)
        for b in INFER_BATCHES:
            raw = [r[b] for r in res[c.name]]
            rows[c.name][f"img_s_b{b}"] = data.xte.shape[0] / statistics.median(raw)
            rows[c.name][f"raw_s_b{b}"] = raw
    return {"rows": rows, "repeats": repeats, "discarded_repeats": discarded, "kept_repeats_other_cpu": kept}


# --------------------------------------------------------------------------------------- reporting
def _fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}×"


def _mb(b: float) -> str:
    return f"{b / 2**20:.1f} MiB"


def _floor_name(rows: dict[str, Any], env: Env, tag: str, blas: str | None = None) -> str | None:
    """The floor row an xpnet row compares with: its own BLAS's on NumPy (`blas`: its "blas" entry;
    None: the default row's), CuPy's on CuPy."""
    label = "cupy" if env.backend == "cupy" else blas or ("mkl" if mkl_floor(env) is default_blas(env) else "numpy")
    name = f"floor {label} ({tag})"
    return name if name in rows else None


def _peer_names(rows: dict[str, Any]) -> list[str]:
    return [n for n, r in rows.items() if r["kind"] == "peer"]


CORES_HEAD = "cores used (CPU s ÷ wall s)"


def cores_cell(row: dict[str, Any]) -> str:
    """Median and range of a row's per-round CPU ÷ wall seconds, or "—" when not measured."""
    used = row.get("cores_used") or []
    if not used:
        return "—"
    return f"{statistics.median(used):.2f} ({min(used):.2f}–{max(used):.2f})"


def training_table(res: dict[str, Any], env: Env) -> list[str]:
    rows = res["rows"]
    f3, f2 = _floor_name(rows, env, "3 GEMM/layer"), _floor_name(rows, env, "no first dX")
    peers = _peer_names(rows)
    head = ["contender", "s/epoch (median)", "min–max", "ms/step", CORES_HEAD, "× floor 3GEMM", "× floor no-dX1"]
    head += [f"× {p}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        t = r["s_per_epoch"]
        floors = (f3, f2)  # the default row's BLAS's floor, for every row but the xpnet rows of another BLAS
        if r.get("blas") and env.backend == "numpy":  # an xpnet row: the floor of its own BLAS
            floors = tuple(_floor_name(rows, env, tag, r["blas"]) for tag in ("3 GEMM/layer", "no first dX"))
        cells = [
            name,
            f"{t:.3f} s",
            f"{r['s_per_epoch_min']:.3f}–{r['s_per_epoch_max']:.3f}",
            f"{r['ms_per_step']:.3f}",
            cores_cell(r),
        ]
        cells += [_fmt_ratio(paired(r["raw_s"], rows[f]["raw_s"])) if f else "—" for f in floors]
        cells += [_fmt_ratio(paired(r["raw_s"], rows[p]["raw_s"])) for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def inference_table(res: dict[str, Any], env: Env) -> list[str]:
    rows = res["rows"]
    default_floor = _floor_name(rows, env, "forward GEMMs") or "floor numpy (forward GEMMs)"
    peers = _peer_names(rows)
    head = ["contender"]
    for b in INFER_BATCHES:
        head += [f"img/s b{b}", "÷ floor"] + [f"÷ {p}" for p in peers]
    head.append(CORES_HEAD)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells, fl = [name], default_floor
        if r.get("blas") and env.backend == "numpy":  # an xpnet row: the floor of its own BLAS
            fl = _floor_name(rows, env, "forward GEMMs", r["blas"]) or fl
        for b in INFER_BATCHES:
            key = f"raw_s_b{b}"
            cells += [f"{r[f'img_s_b{b}'] / 1e3:,.0f}k", _fmt_ratio(paired(rows[fl][key], r[key]))]
            cells += [_fmt_ratio(paired(rows[p][key], r[key])) for p in peers]
        cells.append(cores_cell(r))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def evaluate_targets(results: dict[str, Any], env: Env) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, value: float | None, limit: float, higher_is_better: bool, shown: str, note: str = "") -> None:
        if value is None:
            out.append({"target": target, "value": None, "shown": "—", "status": "n/a", "note": note})
            return
        ok = value >= limit if higher_is_better else value <= limit
        out.append(
            {"target": target, "value": value, "shown": shown, "status": "met" if ok else "MISSED", "note": note}
        )

    for name, wl in WORKLOADS.items():
        res = results["training"].get(name)
        if res is None:
            continue
        rows = res["rows"]
        xt = rows["xpnet"]["raw_s"]
        f3 = _floor_name(rows, env, "3 GEMM/layer")
        if wl.floor_target is not None and f3:
            r = paired(xt, rows[f3]["raw_s"])
            add(f"{name}: xpnet ≤ {wl.floor_target}× GEMM floor (3 GEMM/layer)", r, wl.floor_target, False, f"{r:.2f}×")
        if wl.peer_target is not None:
            tn = next((p for p in _peer_names(rows) if p.startswith("PyTorch")), None)
            rp = paired(xt, rows[tn]["raw_s"]) if tn else None
            add(
                f"{name}: xpnet ≤ {wl.peer_target}× PyTorch's time",
                rp,
                wl.peer_target,
                False,
                f"{rp:.2f}×" if rp is not None else "—",
                "" if tn else env.torch_note,
            )
        if name == "A" and "memory" in res:
            mem = res["memory"]
            peak = mem["xpnet"].get("peak_bytes")
            if peak is not None:
                ds = mem["dataset_bytes"]
                if mem["xpnet"].get("includes_dataset"):  # device memory: fit's own upload is the dataset copy
                    r, shown = (
                        peak / ds,
                        f"device peak {_mb(peak)} (dataset upload included) = {peak / ds:.2f}× dataset",
                    )
                else:
                    r = (ds + peak) / ds
                    shown = f"dataset {_mb(ds)} + fit peak {_mb(peak)} = {r:.2f}× dataset"
                add("A: peak fit memory ≤ dataset + 25%", r, 1.25, False, shown)
    inf = results.get("inference")
    if inf is not None:
        rows = inf["rows"]
        tn = next((p for p in _peer_names(rows) if p.startswith("PyTorch")), None)
        for b in INFER_BATCHES:
            if tn:
                r = paired(rows[tn][f"raw_s_b{b}"], rows["xpnet"][f"raw_s_b{b}"])
                add(f"inference b{b}: xpnet images/s ≥ PyTorch's", r, 1.0, True, f"{r:.2f}× PyTorch")
            else:
                add(f"inference b{b}: xpnet images/s ≥ PyTorch's", None, 1.0, True, "", env.torch_note)
    return out


# issue 24's targets: (workload, peer's name prefix, xpnet time ÷ peer time at most)
ISSUE24_TRAINING = (
    ("A", "JAX lax.scan", 0.9),
    ("A", "PyTorch", 0.5),
    ("B", "JAX lax.scan", 0.5),
    ("lenet", "PyTorch", 0.8),
)
ISSUE24_LENET_PREDICT_B32 = 1.2  # xpnet images/s ÷ PyTorch's, at least


def paired_spread(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, min and max over repeats of a[r] / b[r]."""
    r = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.median(r), min(r), max(r)


def issue24_targets(results: dict[str, Any], env: Env) -> list[dict[str, Any]]:
    """Issue 24's speed targets for every xpnet row (default, eager, replay, without numba), with the
    spread of the per-repeat ratios; at the run's thread count."""
    threads = f"{env.threads} thread{'s' if env.threads != 1 else ''}" if env.threads else "default threads"
    out: list[dict[str, Any]] = []

    def add(target: str, rr: tuple[float, float, float], limit: float, higher: bool, n: int) -> None:
        med, lo, hi = rr
        ok = med >= limit if higher else med <= limit
        shown = f"{med:.2f}× (per-repeat {lo:.2f}–{hi:.2f}, {n} repeats)"
        out.append({"target": target, "value": med, "shown": shown, "status": "met" if ok else "MISSED", "note": ""})

    for wl, prefix, limit in ISSUE24_TRAINING:
        res = results.get("lenet") if wl == "lenet" else results["training"].get(wl)
        if res is None:
            continue
        rows = res["rows"]
        peer = next((n for n in _peer_names(rows) if n.startswith(prefix)), None)
        if peer is None:
            continue
        for name, r in rows.items():
            if r["kind"] == "xpnet":
                rr = paired_spread(r["raw_s"], rows[peer]["raw_s"])
                add(f"issue 24, {wl}, {threads}: {name} ≤ {limit}× {peer}'s epoch", rr, limit, False, len(r["raw_s"]))
    if "lenet" in results:
        irows = results["lenet"]["inference"]["rows"]
        peer = next((n for n in _peer_names(irows) if n.startswith("PyTorch")), None)
        for name, r in irows.items():
            if peer is not None and r["kind"] == "xpnet":
                rr = paired_spread(irows[peer]["raw_s_b32"], r["raw_s_b32"])
                lim = ISSUE24_LENET_PREDICT_B32
                target = f"issue 24, lenet predict b32, {threads}: {name} images/s ≥ {lim}× {peer}'s"
                add(target, rr, lim, True, len(r["raw_s_b32"]))
    return out


def first_and_route_lines(res: dict[str, Any]) -> list[str]:
    """Each contender's first epoch (as measured), and how each xpnet row's plan runs the step."""
    rows = res["rows"]
    firsts = [f"{n} {r['first_epoch_s']:.3f} s" for n, r in rows.items() if "first_epoch_s" in r]
    out = []
    if firsts:
        out += [
            "",
            f"First epoch of each contender on {res['steps_measured']} steps, as measured (not scaled): JAX's "
            f"includes its compilation, xpnet's its first steps (and any recording): {'; '.join(firsts)}",
        ]
    routes = [f"{n}: {r['step']}" for n, r in rows.items() if "step" in r]
    if routes:
        out += ["", "How xpnet's plan runs each row's training step: " + "; ".join(routes)]
    return out


def _discard_note(res: dict[str, Any]) -> list[str]:
    out = []
    d = res.get("discarded_repeats") or []
    if d:
        shares = ", ".join(f"{x:.0%}" for x in d)
        out.append(f"{len(d)} repeat(s) discarded and re-run because other processes were busy ({shares} of the CPUs).")
    k = res.get("kept_repeats_other_cpu") or []
    if k:
        out.append(
            f"Other processes' share of the CPUs during the kept repeats: median {statistics.median(k):.0%}, "
            f"max {max(k):.0%}."
        )
    return ["", " ".join(out)] if out else []


def report(results: dict[str, Any], env: Env, args: argparse.Namespace, data: Data) -> str:
    meta = results["meta"]
    L: list[str] = []
    L.append(f"## xpnet benchmark — {meta['date']}")
    L.append("")
    pinned = f" (the run pinned to {len(env.cores)})" if env.cores else ""
    L.append(f"- machine: {meta['cpu']}, {meta['cores']} usable cores{pinned}, {meta['platform']}")
    L.append(
        f"- Python {meta['python']}, NumPy {meta['numpy']} ({meta['numpy_blas']}); BLAS threads: "
        f"{env.blas_threads} ({env.blas_desc}); xpnet {meta['xpnet']}, backend {env.backend}"
        + (f" with numba {meta['backend_info']['numba']}'s kernels" if "numba" in meta.get("backend_info", {}) else "")
        + (f"; xpnet's GEMMs: {meta['backend_info']['blas']}" if "blas" in meta.get("backend_info", {}) else "")
    )
    if env.torch is not None:
        L.append(f"- PyTorch {env.torch.__version__} on {env.torch_device}, torch.set_num_threads({env.blas_threads})")
    if env.threads is not None:
        pinned = (
            f"the whole run pinned to core(s) {env.cores} with os.sched_setaffinity before any peer was imported "
            "(every thread; threads and processes started later inherit it)"
            if env.cores
            else "NOT pinned (sched_setaffinity missing or refused): a peer may use more cores than its threads"
        )
        L.append(
            f"- --threads {env.threads}: {pinned}; XPNET_BLAS_THREADS={env.threads} and a threadpoolctl limit "
            "for NumPy's BLAS. Each table's cores-used column is CPU seconds ÷ wall seconds over the timed "
            "rounds (median and range), so a contender that used more than its cores shows"
        )
    for note in (env.torch_note, env.keras_note, env.jax_note, *env.notes):
        if note:
            L.append(f"- note: {note}")
    L.append(
        f"- data: {data.source}; {data.xtr.shape[0]:,} training images, {data.xte.shape[0]:,} test images, float32"
    )
    L.append(
        f"- method: {args.warmup} warm-up + {args.repeats} interleaved repeats (rotating order), median; "
        f"{args.epochs_per_measure} epoch(s) per measurement; all contenders keep running loss + accuracy sums "
        "except the floors; no validation data. Ratios (×, ÷) are medians of per-repeat ratios"
    )
    if data.xtr.shape[0] < N_TRAIN_FULL:
        L.append(
            f"- SUBSET: epochs measured on {data.xtr.shape[0]:,} images; s/epoch scaled to 55,000 images by the "
            "step count (ms/step is as measured)"
        )
    L.append("")
    for name, res in results["training"].items():
        L.append(f"### {name}: {res['workload']} ({res['steps_measured']} steps/epoch measured)")
        L.append("")
        L += training_table(res, env)
        L += _discard_note(res)
        L += first_and_route_lines(res)
        if res.get("xpnet_fit_call_overhead_s") is not None:
            L.append("")
            L.append(
                f"xpnet fit-call overhead outside the epoch loop (input checks, upload): "
                f"{res['xpnet_fit_call_overhead_s'] * 1e3:.1f} ms per fit call"
            )
        if "memory" in res:
            mem = res["memory"]
            parts = [f"dataset {_mb(mem['dataset_bytes'])}"]
            xm = mem["xpnet"]
            if "peak_bytes" in xm:
                parts.append(f"xpnet fit peak +{_mb(xm['peak_bytes'])} ({xm['method']})")
            tm = mem.get("torch", {})
            if "peak_bytes" in tm:
                parts.append(f"PyTorch peak +{_mb(tm['peak_bytes'])}")
            L.append("")
            L.append("Memory of one fit epoch: " + "; ".join(parts))
        L.append("")
    if "inference" in results:
        inf = results["inference"]
        L.append(f"### infer: model A over the {N_TEST:,} test images (predict; median of {inf['repeats']} repeats)")
        L.append("")
        L += inference_table(inf, env)
        L += _discard_note(inf)
        L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| target | measured | status |")
    L.append("|---|---|---|")
    for t in results["targets"]:
        L.append(f"| {t['target']} | {t['shown']}{' (' + t['note'] + ')' if t['note'] else ''} | {t['status']} |")
    return "\n".join(L)


# --------------------------------------------------------------------------------------- profiling
def profile_xpnet(data: Data, env: Env, epochs: int, top: int) -> list[str]:
    """pyinstrument over xpnet's fit for workload A; a flat list of functions by self time per step."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return ["(--profile needs pyinstrument: pip install pyinstrument)"]
    wl = WORKLOADS["A"]
    model = build_xpnet(wl, env.backend)
    x = data.xtr if env.backend == "numpy" else model.ops.asarray(data.xtr)  # type: ignore[union-attr]
    model.fit(x, data.ytr, batch_size=wl.batch, epochs=1, verbose=0)  # warm-up
    cb = _epoch_timer()
    # 0.5 ms: much shorter intervals oversubscribe 2 cores and slow multithreaded BLAS down badly
    prof = Profiler(interval=0.0005)
    prof.start()
    model.fit(x, data.ytr, batch_size=wl.batch, epochs=epochs, verbose=0, callbacks=[cb])
    prof.stop()
    steps = math.ceil(data.xtr.shape[0] / wl.batch) * epochs
    selfs: dict[str, float] = {}
    incl: dict[str, float] = {}

    def walk(frame: Any, stack: frozenset[str]) -> None:
        if frame.function == "[self]":  # pyinstrument's own leaf for a parent's self time
            return
        key = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        selfs[key] = selfs.get(key, 0.0) + frame.total_self_time
        if key not in stack:  # inclusive time, recursion-safe
            incl[key] = incl.get(key, 0.0) + frame.time
        for child in frame.children:
            walk(child, stack | {key})

    session = prof.last_session
    if session is None:
        return ["(pyinstrument recorded nothing)"]
    walk(session.root_frame(), frozenset())
    total = sum(cb.times)
    lines = [
        f"pyinstrument (interval 0.5 ms) over {epochs} epoch(s) of xpnet A = {steps} steps; "
        f"{total / steps * 1e6:.0f} µs/step under the profiler",
        "",
        "| function | self µs/step | self % | incl. µs/step |",
        "|---|---|---|---|",
    ]
    for key, s in sorted(selfs.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(
            f"| {key} | {s / steps * 1e6:.1f} | {100 * s / total:.1f}% | {incl.get(key, 0) / steps * 1e6:.1f} |"
        )
    return lines


# --------------------------------------------------------------------------------------- LeNet-5 (--workloads lenet)
LENET_TITLE = "LeNet-5: Conv 6@5×5 same relu, pool 2, Conv 16@5×5 same relu, pool 2, 120-84-10; SGD 0.01, batch 32"
LENET_PEER_TARGET, LENET_PEER_AIM, LENET_MEMORY_TARGET = 1.0, 0.5, 1.5


def lenet_images(data: Data, channels_first: bool = False) -> Data:
    """The same pixels as (n, 28, 28, 1) (or (n, 1, 28, 28) for PyTorch): views, no copies (one channel)."""
    shape = (1, 28, 28) if channels_first else (28, 28, 1)
    return Data(data.xtr.reshape(-1, *shape), data.ytr, data.xte.reshape(-1, *shape), data.yte, data.source)


def build_xpnet_lenet(backend: Any, jit: bool | None = None, seed: int = 0) -> xpnet.Sequential:
    """backend: a name or an Ops; jit: compile(jit_compile=...), None: the default."""
    from xpnet import experiments

    model = experiments.build_model("lenet", seed=seed)
    extra = {} if jit is None else {"jit_compile": jit}
    model.compile(
        optimizer=xpnet.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        backend=backend,
        **extra,
    )
    return model


class LenetGemmFloor(Contender):
    """The matrix products of a LeNet epoch, timed alone with preallocated outputs (float32).

    Per step, convolutions as im2col GEMMs of the exact shapes (n·oh·ow, kh·kw·c) @ (kh·kw·c, f):
    forward, ∂W = Pᵀδ and (second convolution only: the first needs no input gradient) ∂P = δWᵀ;
    the three Dense layers as in `GemmFloor` (forward, ∂W, ∂x). No im2col copies, no col2im,
    no pooling, no elementwise work: what a perfect implementation on this BLAS would still pay.
    """

    kind = "floor"

    def __init__(self, name: str, n_train: int, batch: int = 32, mm: Callable[..., Any] = np.matmul) -> None:
        """mm: the product, np.matmul or a `_cblas.Blas`'s matmul (MKL: a few µs of checks per product)."""
        self.name, self.n, self.batch, self.mm = name, n_train, batch, mm
        rng = np.random.default_rng(2)

        def a(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape).astype(np.float32)

        # (rows, k, f, need_dx): conv1, conv2, dense 784-120, 120-84, 84-10
        self.shapes = [(batch * 784, 25, 6, False), (batch * 196, 150, 16, True), (batch, 784, 120, True)]
        self.shapes += [(batch, 120, 84, True), (batch, 84, 10, True)]
        self.bufs = [(a(r, k), a(k, f), a(r, f), a(k, f), a(r, k), dx) for r, k, f, dx in self.shapes]
        self.flops_per_step = sum(2 * r * k * f * (3 if dx else 2) for r, k, f, dx in self.shapes)

    def train_epochs(self, k: int) -> float:
        mm, steps = self.mm, math.ceil(self.n / self.batch)
        t0 = time.perf_counter()
        for _ in range(k * steps):
            for p, w, u, *_ in self.bufs:
                mm(p, w, out=u)
            for p, w, u, dw, dp, need_dx in reversed(self.bufs):
                mm(p.T, u, out=dw)
                if need_dx:
                    mm(u, w.T, out=dp)
        return (time.perf_counter() - t0) / k


class TorchLenetContender(TorchContender):
    """PyTorch eager, the same LeNet (Glorot-uniform kernels, zero biases), SGD 0.01, plain loop."""

    def __init__(self, data: Data, env: Env) -> None:
        torch = env.torch
        self.torch, self.wl, self.data, self.dev = torch, WORKLOADS["A"], data, torch.device(env.torch_device)
        self.name = f"PyTorch {torch.__version__.split('+')[0]} {env.torch_device}"
        torch.manual_seed(0)
        nn = torch.nn
        mods = [
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),  # (c, h, w) order: a different feature order than Keras's, the same model
            nn.Linear(784, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        ]
        for m in mods:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.model = nn.Sequential(*mods).to(self.dev)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.X = torch.from_numpy(data.xtr).to(self.dev)
        self.Y = torch.from_numpy(data.ytr.astype(np.int64)).to(self.dev)
        self.gen = torch.Generator().manual_seed(0)
        self._logs = {}


def profile_lenet(data: Data, env: Env, top: int, steps: int = 400) -> list[str]:
    """cProfile (standard library) over `steps` training steps of xpnet's LeNet: self time per step by function."""
    import cProfile
    import pstats

    model = build_xpnet_lenet(env.backend)
    n = steps * 32
    x, y = data.xtr[:n], data.ytr[:n]
    model.fit(x[:3200], y[:3200], batch_size=32, epochs=1, verbose=0)  # warm-up
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(((v[2], v[3], k) for k, v in stats.items()), key=lambda r: -r[0])[:top]
    lines = [
        f"cProfile over {steps} steps of xpnet's LeNet fit: {wall / steps * 1e3:.2f} ms/step under the profiler",
        "",
        "| function | self µs/step | self % | incl. µs/step |",
        "|---|---|---|---|",
    ]
    for tt, ct, (file, line, fn) in rows:
        where = f"{os.path.basename(file)}:{line}" if file != "~" else "builtin"
        lines.append(f"| {fn} ({where}) | {tt / steps * 1e6:.0f} | {100 * tt / wall:.1f}% | {ct / steps * 1e6:.0f} |")
    return lines


def run_lenet(data: Data, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """Training epoch (floor, xpnet, PyTorch interleaved), fit memory, then predict on the 10,000 test images."""
    nhwc, nchw = lenet_images(data), lenet_images(data, channels_first=True)
    lenet_wl = Workload("lenet", LENET_TITLE, (), None, "sgd", 32, None)

    def probe(model: Any) -> None:
        model.fit(nhwc.xtr[:64], nhwc.ytr[:64], batch_size=32, epochs=1, verbose=0)

    models = {"xpnet": build_xpnet_lenet(env.backend)}
    models.update(variant_models(env, build_xpnet_lenet, probe, "lenet"))
    xp_all = xpnet_rows(WORKLOADS["A"], nhwc, env, models)
    for c in xp_all:
        assert isinstance(c, XpnetContender)
        c.wl = lenet_wl
    xp_c = xp_all[0]
    assert isinstance(xp_c, XpnetContender)
    contenders: list[Contender] = [LenetGemmFloor("floor numpy (3 GEMM/layer)", data.xtr.shape[0]), *xp_all]
    if mkl_floor(env) is not None:
        contenders.insert(1, LenetGemmFloor("floor mkl (3 GEMM/layer)", data.xtr.shape[0], mm=mkl_floor(env).matmul))
    if env.torch is not None:
        contenders.append(TorchLenetContender(nchw, env))
    k = args.epochs_per_measure
    cores: dict[str, list[float]] = {}
    res, discarded, kept, first = interleaved(
        contenders,
        lambda c: c.train_epochs(k),
        args.warmup,
        args.repeats,
        "lenet train",
        args.redo,
        args.settle,
        cores,
    )
    steps = math.ceil(data.xtr.shape[0] / 32)
    scale = math.ceil(N_TRAIN_FULL / 32) / steps
    rows = with_cores(training_rows(contenders, res, first, steps, scale), cores)
    floor = contenders[0]
    assert isinstance(floor, LenetGemmFloor)
    out: dict[str, Any] = {
        "workload": LENET_TITLE,
        "batch": 32,
        "steps_measured": steps,
        "scale": scale,
        "rows": rows,
        "gflop_per_epoch": floor.flops_per_step * math.ceil(N_TRAIN_FULL / 32) / 1e9,
        "discarded_repeats": discarded,
        "kept_repeats_other_cpu": kept,
    }
    if not args.no_memory:
        out["memory"] = {"dataset_bytes": data.nbytes, "xpnet": xp_c.fit_memory()}
    infer_c = [c for c in contenders if c.kind != "floor"]
    repeats = args.infer_repeats or max(3, 2 * args.repeats)

    def both(c: Contender) -> dict[int, float]:
        return {b: c.infer(b) for b in INFER_BATCHES}

    icores: dict[str, list[float]] = {}
    ires, idisc, ikept, _ = interleaved(
        infer_c, both, args.warmup, repeats, "lenet infer", args.redo, args.settle, icores
    )
    irows: dict[str, dict[str, Any]] = {}
    for c in infer_c:
        irows[c.name] = {"kind": c.kind, "cores_used": icores.get(c.name, [])}
        for b in INFER_BATCHES:
            raw = [r[b] for r in ires[c.name]]
            irows[c.name][f"img_s_b{b}"] = data.xte.shape[0] / statistics.median(raw)
            irows[c.name][f"raw_s_b{b}"] = raw
    out["inference"] = {"rows": irows, "repeats": repeats, "discarded_repeats": idisc, "kept_repeats_other_cpu": ikept}
    if args.profile:
        out["profile"] = profile_lenet(nhwc, env, 25)
    return out


def lenet_report(res: dict[str, Any], env: Env) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown for the LeNet section, and its targets (as `evaluate_targets` gives them)."""
    L = [f"### lenet: {res['workload']} ({res['steps_measured']} steps/epoch measured)", ""]
    L += training_table(res, env)
    L += _discard_note(res)
    L += first_and_route_lines(res)
    L += [
        "",
        f"The floor's GEMMs: {res['gflop_per_epoch']:.0f} GFLOP per 55,000-image epoch "
        "(convolutions as exact-size im2col GEMMs).",
    ]
    targets: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok: bool, shown: str) -> None:
        targets.append(
            {"target": target, "value": value, "shown": shown, "status": "met" if ok else "MISSED", "note": ""}
        )

    rows = res["rows"]
    torch_name = next((p for p in _peer_names(rows) if p.startswith("PyTorch")), None)
    if torch_name:
        r = paired(rows["xpnet"]["raw_s"], rows[torch_name]["raw_s"])
        add(f"lenet: xpnet epoch ≤ {LENET_PEER_TARGET}× PyTorch's", r, r <= LENET_PEER_TARGET, f"{r:.2f}×")
        add(f"lenet: xpnet epoch ≤ {LENET_PEER_AIM}× PyTorch's (aim)", r, r <= LENET_PEER_AIM, f"{r:.2f}×")
    mem = res.get("memory")
    if mem and "peak_bytes" in mem["xpnet"]:
        ds, peak = mem["dataset_bytes"], mem["xpnet"]["peak_bytes"]
        r = (ds + peak) / ds
        L += [
            "",
            f"Memory of one LeNet fit epoch: dataset {_mb(ds)}, xpnet fit peak +{_mb(peak)} ({mem['xpnet']['method']})",
        ]
        add(
            f"lenet: peak fit memory ≤ {LENET_MEMORY_TARGET}× dataset", r, r <= LENET_MEMORY_TARGET, f"{r:.2f}× dataset"
        )
    inf = res["inference"]
    L += ["", f"#### lenet predict over the {N_TEST:,} test images (median of {inf['repeats']} repeats)", ""]
    irows = inf["rows"]
    head = (
        ["contender"]
        + [f"img/s b{b}" for b in INFER_BATCHES]
        + ([f"÷ {torch_name} b{b}" for b in INFER_BATCHES] if torch_name else [])
        + [CORES_HEAD]
    )
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in irows.items():
        cells = [name] + [f"{r[f'img_s_b{b}'] / 1e3:,.1f}k" for b in INFER_BATCHES]
        if torch_name:
            cells += [_fmt_ratio(paired(irows[torch_name][f"raw_s_b{b}"], r[f"raw_s_b{b}"])) for b in INFER_BATCHES]
        cells.append(cores_cell(r))
        L.append("| " + " | ".join(cells) + " |")
    L += _discard_note(inf)
    if torch_name:
        for b in INFER_BATCHES:
            r = paired(irows[torch_name][f"raw_s_b{b}"], irows["xpnet"][f"raw_s_b{b}"])
            add(f"lenet predict b{b}: xpnet images/s ≥ PyTorch's", r, r >= 1.0, f"{r:.2f}× PyTorch")
    if "profile" in res:
        L += ["", "#### Profile of xpnet's LeNet fit", "", *res["profile"]]
    return L, targets


# --------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="xpnet backend (default numpy)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 7; --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per contender (default 1)")
    p.add_argument("--epochs-per-measure", type=int, default=1, help="epochs per timed measurement (default 1)")
    p.add_argument(
        "--workloads",
        default="A,B,A1024,infer",
        help="comma list of A, B, A1024, infer, lenet (LeNet-5 training + predict)",
    )
    p.add_argument(
        "--peers", default="torch,keras,jax", help="comma list of peers to try (torch, keras, jax; '' for none)"
    )
    p.add_argument(
        "--variants",
        default="eager,replay,no-numba,openblas,mkl",
        help="xpnet rows beside the default one (comma list, '' for none): eager (jit_compile=False), replay\n"
        "(jit_compile=True), no-numba (the default without numba's kernels, as XPNET_JIT=0 gives), openblas\n"
        "and mkl (the default with that BLAS, XPNET_BLAS; the default's own BLAS and a missing MKL: no row)",
    )
    p.add_argument("--replay", action="store_true", help="old spelling: adds eager and replay to --variants")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="pin the run to N cores (os.sched_setaffinity) and give all one thread count: NumPy's BLAS\n"
        "(xpnet via XPNET_BLAS_THREADS), PyTorch, and XLA (N=1: one thread; otherwise XLA's default pool);\n"
        "default: no pinning, each library's own choice",
    )
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="training images per epoch (default 55,000; --quick 11,000); times are scaled to 55,000",
    )
    p.add_argument("--infer-repeats", type=int, default=None, help="inference repeats (default 2×repeats)")
    p.add_argument("--quick", action="store_true", help="smoke run: 11,000 training images, 3 repeats")
    p.add_argument("--no-memory", action="store_true", help="skip the fit-memory measurement")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        metavar="S",
        help="first wait up to S seconds for other processes to leave the CPUs idle (default 60)",
    )
    p.add_argument(
        "--redo",
        type=int,
        default=None,
        help="rounds that may be re-run because other processes were busy (default: as many as --repeats)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.3,
        metavar="S",
        help="idle pause before each timed run, so the previous contender's spinning threads stop (default 0.3)",
    )
    p.add_argument("--download", action="store_true", help="allow downloading Fashion-MNIST if not found locally")
    p.add_argument("--json", metavar="PATH", help="also write all numbers as JSON to PATH")
    p.add_argument("--baseline", metavar="DIR", help="also time the xpnet of another checkout (a git worktree)")
    p.add_argument("--profile", action="store_true", help="also profile xpnet's fit of A with pyinstrument")
    p.add_argument("--profile-epochs", type=int, default=2, help="epochs profiled with --profile (default 2)")
    a = p.parse_args(argv)
    a.repeats = a.repeats or (3 if a.quick else 7)
    a.redo = a.repeats if a.redo is None else a.redo
    a.train_size = a.train_size or (11_000 if a.quick else N_TRAIN_FULL)
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if a.replay:
        a.variants += [v for v in ("eager", "replay") if v not in a.variants]
    bad_v = [v for v in a.variants if v not in VARIANTS]
    if bad_v:
        p.error(f"--variants: unknown variant(s) {bad_v}; choose from {list(VARIANTS)}")
    if a.threads is not None and not 1 <= a.threads <= usable_cores():
        p.error(f"--threads must be between 1 and the {usable_cores()} usable cores, received {a.threads}")
    bad = [w for w in a.workloads if w not in WORKLOADS and w not in ("infer", "lenet")]
    if bad:
        p.error(f"unknown workload(s) {bad}; choose from {[*WORKLOADS, 'infer', 'lenet']}")
    if a.settle < 0 or a.wait_idle < 0:
        p.error("--settle and --wait-idle must be >= 0")
    if a.repeats < 1 or a.epochs_per_measure < 1 or a.warmup < 0:
        p.error("--repeats and --epochs-per-measure must be >= 1, --warmup >= 0")
    return a


def gpusim_module() -> Any:
    """The GPU stand-in (gpusim) when it is the `cupy` this process imports, else None."""
    cp = sys.modules.get("cupy")
    if cp is None or not type(cp).__module__.startswith("gpusim"):
        return None
    import gpusim

    return gpusim


def launches_per_step(gpusim: Any, steps: int = 5, jit_compile: bool = False) -> dict[str, int]:
    """Kernel launches of one steady-state training step (the fourth) of models A, B and LeNet, counted by gpusim.

    Random data through the real `fit(backend="cupy")` loop; the events are split where each batch begins.
    jit_compile=False counts the eager step's kernels; True the captured step's launches (a graph launch
    and the gathers outside it; raises RuntimeError where the step cannot be captured).
    """
    from gpusim import device

    from xpnet.callbacks import Callback
    from xpnet.experiments import DEFAULTS, build_model, make_optimizer

    class Marker(Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            device.record("mark", f"begin {batch}")

    counts = {}
    for name in ("A", "B", "LENET"):
        d = DEFAULTS[name]
        rng = np.random.default_rng(0)
        x = rng.random((d.batch_size * steps, 28, 28), dtype=np.float32)
        x = x[..., None] if name == "LENET" else x
        y = rng.integers(0, 10, x.shape[0])
        model = build_model(name, seed=1)
        opt = make_optimizer(d.optimizer, d.learning_rate)
        model.compile(
            opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit_compile
        )
        with gpusim.counting() as c:
            model.fit(x, y, batch_size=d.batch_size, epochs=1, verbose=0, callbacks=[Marker()])
        marks = [i for i, (cat, _) in enumerate(c.events) if cat == "mark"]
        counts[name] = sum(cat == "kernel" for cat, _ in c.events[marks[3] + 1 : marks[4]])
    return counts


def main(argv: list[str] | None = None) -> int:
    global BASELINE
    args = parse_args(argv)
    if args.backend == "cupy":
        gpusim = gpusim_module()
        if gpusim is not None:  # a stand-in's times mean nothing: its launch counts are what it shows
            counts = launches_per_step(gpusim)
            try:
                captured: dict[str, Any] = launches_per_step(gpusim, jit_compile=True)
            except RuntimeError as e:  # CuPy's own cuBLAS wrappers refuse capture (GPUSIM_CUBLAS_IN_CAPTURE=1)
                captured = dict.fromkeys(counts, f"not captured ({e})")
            print("gpusim stand-in: kernel launches per training step (steady state, the fit loop):")
            for name, n in counts.items():
                print(f"  {name:<6} {n:3d} launches per step eager; captured: {captured[name]}")
            print("(no timings on the stand-in; run on a GPU for them)")
            return 0
        print("launches per step: skipped (counted only when cupy is the gpusim stand-in)", file=sys.stderr)
    if args.baseline:
        BASELINE = load_baseline(args.baseline)
    t_start = time.perf_counter()
    busy_before = wait_for_idle(args.wait_idle)
    watch = CpuWatch()
    cores_before = usable_cores()  # the machine's, before --threads pins the run
    env = make_env(args)
    data = load_data(args.train_size, args.download)
    print(f"data: {data.source} ({data.xtr.shape[0]:,} train / {data.xte.shape[0]:,} test)", file=sys.stderr)
    results: dict[str, Any] = {
        "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_model(),
            "cores": cores_before,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numpy_blas": numpy_blas_name(),
            "blas_threads": env.blas_threads,
            "blas": env.blas_desc,
            "backend": env.backend,
            "backend_info": xpnet.get_backend(env.backend).info(),
            "torch": getattr(env.torch, "__version__", None),
            "torch_device": env.torch_device if env.torch is not None else None,
            "keras": getattr(env.keras, "__version__", None),
            "notes": [n for n in (env.torch_note, env.keras_note) if n],
            "data": data.source,
            "train_images": int(data.xtr.shape[0]),
            "xpnet": f"{xpnet.__version__} ({git_state()})",
            "baseline": getattr(BASELINE, "revision", None),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
        },
        "training": {},
    }
    models_a: dict[str, Any] = {}
    for name in args.workloads:
        if name in ("infer", "lenet"):
            continue
        res = run_training(WORKLOADS[name], data, env, args)
        models = res.pop("_xpnet_models")
        if name == "A":
            models_a = models
        results["training"][name] = res
    if "infer" in args.workloads:
        results["inference"] = run_inference(models_a, data, env, args)
    results["targets"] = evaluate_targets(results, env)
    lenet_lines: list[str] = []
    if "lenet" in args.workloads:
        results["lenet"] = run_lenet(data, env, args)
        lenet_lines, lenet_targets = lenet_report(results["lenet"], env)
        results["targets"] += lenet_targets
    results["targets"] += issue24_targets(results, env)
    text = report(results, env, args, data)
    if lenet_lines:
        head, sep, tail = text.partition("### Targets")
        text = head + "\n".join(lenet_lines) + "\n\n" + sep + tail
    if args.profile and any(w != "lenet" for w in args.workloads):
        prof = profile_xpnet(data, env, args.profile_epochs, 25)
        text += "\n\n### Profile of xpnet's fit, workload A\n\n" + "\n".join(prof)
        results["profile"] = prof
    results["meta"]["wall_s"] = time.perf_counter() - t_start
    busy_during = watch.others()
    parts = [*results["training"].values(), results.get("inference") or {}]
    if "lenet" in results:
        parts += [results["lenet"], results["lenet"]["inference"]]
    kept = [x for r in parts for x in r.get("kept_repeats_other_cpu", [])]
    results["meta"]["other_cpu_share_before"] = busy_before
    results["meta"]["other_cpu_share_whole_run"] = busy_during
    if busy_during is not None:
        text += (
            f"\n\nOther processes used {busy_during:.0%} of the CPUs over the whole run, waits included"
            + (f" ({busy_before:.0%} just before it)" if busy_before is not None else "")
            + (f"; at most {max(kept):.0%} during any kept repeat" if kept else "")
            + (": TIMINGS UNRELIABLE, rerun on an idle machine." if kept and max(kept) > BUSY else ".")
        )
    text += f"\n\n(total benchmark wall time {results['meta']['wall_s']:.0f} s)"
    print(text)
    if args.json:
        tmp = f"{args.json}.tmp"  # written whole, then renamed: an interrupted run leaves the old file
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2, default=float)
        os.replace(tmp, args.json)
        print(f"\nJSON written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
