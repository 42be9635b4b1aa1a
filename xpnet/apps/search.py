"""Hyperparameter search: grid and random, in this process or in several.

    from xpnet.search import grid_search, random_search, mlp_builder, loguniform

    build = mlp_builder(input_shape=(28, 28), n_classes=10)
    result = random_search(
        build,
        {"units": [64, 128, 256], "layers": [1, 2], "learning_rate": loguniform(1e-4, 1e-2), "batch_size": [32, 128]},
        x_train, y_train, validation_data=(x_valid, y_valid), epochs=5, n_trials=20, n_jobs=2,
    )
    print(result.table())
    result.best_params, result.best_score, result.best_model.evaluate(x_test, y_test)

`build_fn(**params)` returns a compiled model; `batch_size` and `epochs` in a space are
passed to `fit` instead. Each trial is seeded from (seed, trial index): the global xpnet
seed is set to it before `build_fn` runs (and passed as `seed=` when build_fn takes one),
so a trial gives the same model and history whichever process runs it and whatever ran
before. The score is `metric` at the last epoch (aggregate="best": its best epoch). The space,
its distributions and each trial's parameters and seed are in xpnet/apps/search_space.py.

n_jobs > 1 runs trials in worker processes started with "spawn" (safe with CUDA and
threads; scripts need an `if __name__ == "__main__":` guard). Each worker gets the data
once, builds, trains and sends back its history and weights; models are never pickled.
The parent rebuilds the best model from its parameters and seed and loads its weights
(the optimizer's state is not carried over).

Every trial runs with `threads_per_worker` BLAS threads (default 1): in workers through the
OMP/OpenBLAS/MKL environment variables set while they start, in this process through
threadpoolctl when it is installed. n_jobs workers then do not oversubscribe the cores, and
a trial gives the same numbers with any n_jobs (float32 matrix products differ in the last
bits with the thread count, and training amplifies that). threads_per_worker=None leaves
the thread pools alone.
"""

from __future__ import annotations

import copy
import inspect
import math
import multiprocessing as mp
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import random as xrandom
from .search_space import check_space, grid_of, loguniform, randint, sample_trial, trial_seed, uniform

__all__ = [
    "FIT_PARAMS",
    "MLPBuilder",
    "SearchResult",
    "grid_search",
    "loguniform",
    "mlp_builder",
    "randint",
    "random_search",
    "trial_seed",
    "uniform",
]

FIT_PARAMS = ("batch_size", "epochs")
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True)
class MLPBuilder:
    """A picklable build_fn: [Flatten →] (Dense(units, activation) [→ Dropout])×layers → Dense(n_classes, softmax).

    Compiled with sparse categorical cross-entropy and accuracy. Call parameters: units (int,
    or one int per layer), layers, activation, optimizer ('sgd', 'rmsprop', 'adam'),
    learning_rate (None: the optimizer's default), dropout (rate after each hidden layer),
    l1, l2 (kernel penalties), seed.
    """

    input_shape: tuple[int, ...]
    n_classes: int
    backend: str | None = None
    dtype: str = "float32"
    metrics: tuple[str, ...] = ("accuracy",)

    def __call__(
        self,
        units: int | Sequence[int] = 128,
        layers: int = 1,
        activation: str = "relu",
        optimizer: str = "adam",
        learning_rate: float | None = None,
        dropout: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        seed: int | None = None,
    ) -> Any:
        from .. import optimizers, regularizers
        from ..layers import Dense, Dropout, Flatten, Input
        from ..models.sequential import Sequential

        widths = [int(units)] * int(layers) if isinstance(units, (int, np.integer)) else [int(u) for u in units]
        model = Sequential(seed=seed, dtype=self.dtype, name="mlp")
        model.add(Input(self.input_shape))
        if len(self.input_shape) > 1:
            model.add(Flatten())
        reg = regularizers.L1L2(l1, l2) if (l1 or l2) else None
        for width in widths:
            model.add(Dense(width, activation, kernel_regularizer=reg))
            if dropout:
                model.add(Dropout(dropout))
        model.add(Dense(self.n_classes, "softmax"))
        opt = optimizers.get(optimizer)
        if learning_rate is not None:
            opt = type(opt)(learning_rate=float(learning_rate))
        model.compile(opt, "sparse_categorical_crossentropy", metrics=list(self.metrics), backend=self.backend)
        return model


def mlp_builder(
    input_shape: Sequence[int] | int, n_classes: int, backend: str | None = None, dtype: str = "float32"
) -> MLPBuilder:
    """A build_fn for classification MLPs; see `MLPBuilder` for the parameters it accepts."""
    shape = (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(int(d) for d in input_shape)
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be at least 2, received {n_classes}")
    return MLPBuilder(shape, int(n_classes), backend, dtype)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """xpnet.set_random_seed(seed) for the block, then the previous global seed state."""
    saved = xrandom.seed_state()
    xrandom.set_random_seed(seed)
    try:
        yield
    finally:
        xrandom.restore_seed_state(saved)


def _build(build_fn: Callable[..., Any], params: dict[str, Any], seed: int, x_shape: tuple[int, ...]) -> Any:
    kwargs = {k: v for k, v in params.items() if k not in FIT_PARAMS}
    if "seed" not in kwargs and _takes_seed(build_fn):
        kwargs["seed"] = seed
    with _seeded(seed):
        model = build_fn(**kwargs)
    if not hasattr(model, "fit"):
        raise TypeError(f"build_fn must return a compiled model, returned {type(model).__name__}")
    if getattr(model, "built", True) is False and hasattr(model, "build"):
        model.build(x_shape)
    return model


def _takes_seed(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return "seed" in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


@dataclass
class _Setup:
    x: Any
    y: Any
    validation_data: tuple[Any, Any] | None
    validation_split: float
    epochs: int
    batch_size: int
    metric: str
    mode: str
    aggregate: str
    fit_kwargs: dict[str, Any] = field(default_factory=dict)


def _run_trial(
    build_fn: Callable[..., Any], params: dict[str, Any], index: int, seed: int, setup: _Setup
) -> tuple[dict[str, Any], Any]:
    """Build and train one trial: -> (record, model); the record holds score, history, seconds, error."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"trial": index, "params": params, "seed": seed, "score": math.nan, "error": None}
    model = None
    try:
        model = _build(build_fn, params, seed, tuple(np.shape(setup.x)[1:]))
        fit_kwargs = copy.deepcopy(setup.fit_kwargs)  # callbacks keep state: a fresh copy per trial
        history = model.fit(
            setup.x,
            setup.y,
            batch_size=int(params.get("batch_size", setup.batch_size)),
            epochs=int(params.get("epochs", setup.epochs)),
            verbose=0,
            validation_data=setup.validation_data,
            validation_split=setup.validation_split,
            **fit_kwargs,
        )
        hist = {k: [float(v) for v in vs] for k, vs in getattr(history, "history", history).items()}
        record["history"] = hist
        if setup.metric not in hist:
            raise KeyError(f"metric {setup.metric!r} is not in the training history; it has {sorted(hist)}")
        values = [v for v in hist[setup.metric] if math.isfinite(v)]
        if values:
            best = max(values) if setup.mode == "max" else min(values)
            last = hist[setup.metric][-1]
            record["score"] = float(best if setup.aggregate == "best" else last)
        record["epochs"] = len(hist[setup.metric])
    except Exception as e:  # one failing trial (a bad combination, a diverging run) must not end the search
        record["error"] = f"{type(e).__name__}: {e}"
    record["seconds"] = time.perf_counter() - t0
    return record, model


_WORKER_SETUP: _Setup | None = None


def _worker_init(setup: _Setup) -> None:
    global _WORKER_SETUP
    _WORKER_SETUP = setup


def _worker_trial(build_fn: Callable[..., Any], params: dict[str, Any], index: int, seed: int) -> dict[str, Any]:
    assert _WORKER_SETUP is not None
    record, model = _run_trial(build_fn, params, index, seed, _WORKER_SETUP)
    record["weights"] = model.get_weights() if model is not None and record["error"] is None else None
    return record


@contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    """Limit this process's BLAS pools for the block (via threadpoolctl, when installed).

    Trials in this process then run with as many BLAS threads as in a worker: float32 GEMM
    results depend on the thread count, and training amplifies the last-bit differences.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threads = None
    if threads is None:
        yield
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


@contextmanager
def _thread_env(threads: int | None) -> Iterator[None]:
    """BLAS thread limits for processes spawned inside the block (the parent's own pools are already sized)."""
    if threads is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: str(threads) for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class SearchResult:
    """Trials sorted best first.

    rows: one dict per trial: rank, trial (index), params, <metric> (the score), seconds,
    epochs, seed, error (None, or why the trial failed), history (per-epoch values).
    best_model: the best trial's trained model (rebuilt with its weights when n_jobs > 1).
    """

    metric: str
    mode: str
    rows: list[dict[str, Any]]
    best_model: Any
    seconds: float
    n_jobs: int
    kind: str = "grid"

    @property
    def best(self) -> dict[str, Any]:
        return self.rows[0]

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.rows[0]["params"])

    @property
    def best_score(self) -> float:
        return float(self.rows[0][self.metric])

    def table(self, max_rows: int | None = None, digits: int = 4) -> str:
        """Rank, trial, each parameter, the metric and seconds; failed trials last, with their error."""
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r["params"] if k not in keys]
        head = ["rank", "trial", *keys, self.metric, "seconds"]
        body = []
        for r in self.rows[:max_rows]:
            score = r[self.metric]
            cells = [str(r["rank"]), str(r["trial"]), *(_fmt(r["params"].get(k, "")) for k in keys)]
            cells += ["—" if math.isnan(score) else f"{score:.{digits}f}", f"{r['seconds']:.2f}"]
            if r["error"]:
                cells.append(r["error"][:80])
            body.append(cells)
        widths = [max(len(row[i]) for row in [head, *body] if i < len(row)) for i in range(len(head))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(head, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        for cells in body:
            line = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))
            lines.append(line + ("  " + cells[-1] if len(cells) > len(head) else ""))
        if max_rows is not None and len(self.rows) > max_rows:
            lines.append(f"... {len(self.rows) - max_rows} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"{self.kind} search: {len(self.rows)} trials in {self.seconds:.1f} s (n_jobs={self.n_jobs}), "
            f"best {self.metric} = {self.best_score:.4f} with {self.best_params}\n" + self.table()
        )

    def __repr__(self) -> str:
        return f"<SearchResult {self.kind} trials={len(self.rows)} best_{self.metric}={self.best_score:.4f}>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def grid_search(
    build_fn: Callable[..., Any],
    space: dict[str, Sequence[Any]],
    x: Any,
    y: Any,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    epochs: int = 5,
    batch_size: int = 32,
    metric: str = "val_accuracy",
    mode: str = "max",
    n_jobs: int = 1,
    seed: int = 0,
    verbose: int = 1,
    aggregate: str = "last",
    threads_per_worker: int | None = 1,
    fit_kwargs: dict[str, Any] | None = None,
) -> SearchResult:
    """Train one model per combination of `space` values and rank them by `metric`.

    build_fn(**params) -> compiled model (e.g. `mlp_builder(...)`); space: {name: [values]};
    "batch_size" and "epochs" in space go to fit. x, y, validation_data / validation_split,
    epochs, batch_size: as for `fit`. metric: a key of the fit history ("val_accuracy",
    "val_loss", "accuracy", ...); mode: "max" or "min". n_jobs: worker processes (1: in this
    process; -1: one per CPU). seed: trial i runs with trial_seed(seed, i). verbose: 1 shows a
    tqdm bar over trials. aggregate: "last" epoch's value or the "best" epoch's.
    threads_per_worker: BLAS threads per trial, in workers and in this process (see the
    module docstring; None: leave them alone). fit_kwargs: more arguments for fit (e.g.
    callbacks=[EarlyStopping(...)]).
    """
    check_space(space, grid=True)
    trials = grid_of(space)
    setup = _setup(x, y, validation_data, validation_split, epochs, batch_size, metric, mode, aggregate, fit_kwargs)
    return _search("grid", build_fn, trials, setup, n_jobs, seed, verbose, threads_per_worker)


def random_search(
    build_fn: Callable[..., Any],
    space: dict[str, Any],
    x: Any,
    y: Any,
    n_trials: int = 10,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    epochs: int = 5,
    batch_size: int = 32,
    metric: str = "val_accuracy",
    mode: str = "max",
    n_jobs: int = 1,
    seed: int = 0,
    verbose: int = 1,
    aggregate: str = "last",
    threads_per_worker: int | None = 1,
    fit_kwargs: dict[str, Any] | None = None,
) -> SearchResult:
    """Like `grid_search`, for `n_trials` parameter sets drawn from `space`.

    space values: a list (one element drawn uniformly) or `uniform(a, b)`, `loguniform(a, b)`,
    `randint(a, b)`. Trial i's parameters depend on (seed, i) only.
    """
    check_space(space, grid=False)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, received {n_trials!r}")
    trials = [sample_trial(space, seed, i) for i in range(n_trials)]
    setup = _setup(x, y, validation_data, validation_split, epochs, batch_size, metric, mode, aggregate, fit_kwargs)
    return _search("random", build_fn, trials, setup, n_jobs, seed, verbose, threads_per_worker)


def _setup(
    x: Any,
    y: Any,
    validation_data: tuple[Any, Any] | None,
    validation_split: float,
    epochs: int,
    batch_size: int,
    metric: str,
    mode: str,
    aggregate: str,
    fit_kwargs: dict[str, Any] | None,
) -> _Setup:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', received {mode!r}")
    if aggregate not in ("last", "best"):
        raise ValueError(f"aggregate must be 'last' or 'best', received {aggregate!r}")
    if metric.startswith("val_") and validation_data is None and not validation_split:
        raise ValueError(
            f"metric {metric!r} needs validation data: pass validation_data=(x_val, y_val) or validation_split=0.2"
        )
    kwargs = dict(fit_kwargs or {})
    return _Setup(x, y, validation_data, validation_split, epochs, batch_size, metric, mode, aggregate, kwargs)


def _search(
    kind: str,
    build_fn: Callable[..., Any],
    trials: list[dict[str, Any]],
    setup: _Setup,
    n_jobs: int,
    seed: int,
    verbose: int,
    threads_per_worker: int | None,
) -> SearchResult:
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or -1, received {n_jobs!r}")
    n_jobs = min(n_jobs, len(trials))
    metric, x = setup.metric, setup.x
    seeds = [trial_seed(seed, i) for i in range(len(trials))]
    sign = 1.0 if setup.mode == "max" else -1.0

    def better(score: float, than: float | None) -> bool:
        return math.isfinite(score) and (than is None or sign * score > sign * than)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(trials), desc=f"{kind} search", unit="trial", disable=not verbose, file=sys.stderr)
    records: list[dict[str, Any]] = []
    best_score: float | None = None
    best_model: Any = None
    best_weights: list[np.ndarray] | None = None
    best_index = -1
    t0 = time.perf_counter()

    def done(record: dict[str, Any]) -> None:
        nonlocal best_score, best_index
        records.append(record)
        if better(record["score"], best_score) or (record["score"] == best_score and record["trial"] < best_index):
            best_score, best_index = record["score"], record["trial"]
        bar.update(1)
        if best_score is not None:
            bar.set_postfix_str(f"best {metric}={best_score:.4f} (trial {best_index})")

    try:
        if n_jobs == 1:
            with _blas_threads(threads_per_worker):
                for i, params in enumerate(trials):
                    record, model = _run_trial(build_fn, params, i, seeds[i], setup)
                    done(record)
                    if best_index == i:
                        best_model = model
        else:
            try:
                pickle.dumps(build_fn)
            except Exception as e:
                raise TypeError(
                    f"n_jobs > 1 sends build_fn to worker processes, so it must be picklable (a module-level "
                    f"function or mlp_builder(...)); {build_fn!r} is not: {e}"
                ) from e
            with _thread_env(threads_per_worker):
                ctx = mp.get_context("spawn")
                with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_worker_init, initargs=(setup,)) as pool:
                    pending: set[Future[dict[str, Any]]] = {
                        pool.submit(_worker_trial, build_fn, params, i, seeds[i]) for i, params in enumerate(trials)
                    }
                    try:
                        while pending:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for fut in finished:
                                record = fut.result()
                                weights = record.pop("weights", None)
                                done(record)
                                if best_index == record["trial"]:
                                    best_weights = weights
                    except BaseException:  # Ctrl-C or a broken worker: do not wait for the queued trials
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    records.sort(
        key=lambda r: (
            not math.isfinite(r["score"]),
            -sign * r["score"] if math.isfinite(r["score"]) else 0.0,
            r["trial"],
        )
    )
    rows = []
    for rank, r in enumerate(records, 1):
        rows.append(
            {
                "rank": rank,
                "trial": r["trial"],
                "params": r["params"],
                metric: r["score"],
                "seconds": r["seconds"],
                "epochs": r.get("epochs", 0),
                "seed": r["seed"],
                "error": r["error"],
                "history": r.get("history", {}),
            }
        )
    if best_index < 0:
        errors = "; ".join(f"trial {r['trial']}: {r['error']}" for r in rows[:3] if r["error"])
        raise RuntimeError(f"no trial produced a finite {metric}: {errors or 'every run diverged'}")
    if best_model is None and best_weights is not None:
        best = next(r for r in rows if r["trial"] == best_index)
        best_model = _build(build_fn, best["params"], best["seed"], tuple(np.shape(x)[1:]))
        best_model.set_weights(best_weights)
        _attach_history(best_model, best["history"])
    return SearchResult(metric, setup.mode, rows, best_model, seconds, n_jobs, kind)


def _attach_history(model: Any, hist: dict[str, list[float]]) -> None:
    from ..training.callbacks import History

    h = History()
    h.history = {k: list(v) for k, v in hist.items()}
    h.epoch = list(range(len(next(iter(hist.values()), []))))
    model.history = h
