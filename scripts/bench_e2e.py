#!/usr/bin/env python
"""End to end: `xpnet train --model A` for 30 epochs against a JAX script doing the same, compilation included.

Each contender is a fresh process, timed by wall clock from its start to its exit, so both pay their
imports, the data loading, every compilation, the training with a validation pass per epoch and a
test evaluation at the end:

* xpnet: `python -m xpnet.apps.cli train --model A --epochs E --no-plots --verbose 0 --out <temp>`
  (784-300-100-10 relu/softmax, SGD 0.01, batch 32, validation on the first 5,000 training images);
* JAX: this file with `--jax-child`: the same model (Glorot-uniform weights, zero biases), SGD 0.01,
  batch 32 and data, one `jax.jit`-compiled `lax.scan` over each epoch's batches (the last partial
  batch of each epoch dropped: one compiled shape), and compiled forward passes for the validation
  and test sets. It reads the IDX files itself and imports nothing from xpnet.

With --threads N the script pins itself to N cores before starting any child (each inherits it);
the report gives each child's CPU seconds ÷ wall seconds, the cores it kept busy. Contenders run
interleaved in rotating order, after a pause, for `--repeats` rounds; a round during which other
processes took more than 10% of the CPUs is run again (as scripts/benchmark.py does).
Prints each contender's median wall time with its spread, its first epoch (JAX: compilation
included), its test accuracy, and xpnet ÷ JAX as the median and range of the per-round ratios.
Without JAX it prints one line and exits.

    python scripts/bench_e2e.py                      # 30 epochs, 3 rounds (~4 min on an idle 2-core machine)
    python scripts/bench_e2e.py --epochs 2 --limit 5000 --repeats 1    # a smoke run
    python scripts/bench_e2e.py --threads 1 --no-numba                 # one thread each; xpnet also with XPNET_JIT=0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

FILES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "xt": "t10k-images-idx3-ubyte",
    "yt": "t10k-labels-idx1-ubyte",
}
N_VALID = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="epochs of each run (default 30)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N of the 55,000 images (default all)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="pin to N cores; xpnet --threads N; XLA one thread if N=1",
    )
    p.add_argument("--data-dir", default=None, help="folder of Fashion-MNIST's IDX files (default: xpnet's search)")
    p.add_argument("--no-numba", action="store_true", help="also run xpnet with XPNET_JIT=0 (without numba's kernels)")
    p.add_argument("--settle", type=float, default=1.0, metavar="S", help="idle pause before each run (default 1)")
    p.add_argument("--wait-idle", type=float, default=60.0, metavar="S", help="first wait up to S s for idle CPUs")
    p.add_argument("--redo", type=int, default=None, help="rounds that may be re-run when busy (default: --repeats)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    p.add_argument("--seed", type=int, default=42, help="weights and shuffling (default 42, the CLI's)")
    p.add_argument("--jax-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for name in ("epochs", "repeats", "limit", "threads"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1, received {value}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if a.threads is not None and a.threads > cores:
        p.error(f"--threads {a.threads}: more than the {cores} usable cores")
    if a.settle < 0 or a.wait_idle < 0:
        p.error(f"--settle and --wait-idle must be >= 0, received {a.settle} and {a.wait_idle}")
    a.redo = a.repeats if a.redo is None else a.redo
    return a


def read_idx(folder: Path, stem: str) -> np.ndarray:
    """An IDX file (plain or .gz) as a uint8 array: (n, 28, 28) images or (n,) labels."""
    import gzip

    plain = folder / stem
    raw = plain.read_bytes() if plain.is_file() else gzip.decompress((folder / f"{stem}.gz").read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def jax_child(args: argparse.Namespace) -> int:
    """The JAX run: prints one JSON line (first epoch, training seconds, test accuracy)."""
    t_start = time.perf_counter()
    import jax
    import jax.numpy as jnp

    folder = Path(args.data_dir)
    x, y, xt, yt = (read_idx(folder, FILES[k]) for k in ("x", "y", "xt", "yt"))

    def scale(a: np.ndarray) -> Any:
        return jnp.asarray(a.reshape(len(a), -1).astype(np.float32) / np.float32(255.0))

    x_valid, y_valid = scale(x[:N_VALID]), jnp.asarray(y[:N_VALID].astype(np.int32))
    end = None if args.limit is None else N_VALID + args.limit
    x_train, y_train = scale(x[N_VALID:end]), jnp.asarray(y[N_VALID:end].astype(np.int32))
    x_test, y_test = scale(xt), jnp.asarray(yt.astype(np.int32))
    rng = np.random.default_rng(args.seed)
    params = []
    for a, b in ((784, 300), (300, 100), (100, 10)):
        limit = np.sqrt(6.0 / (a + b))
        params.append((jnp.asarray(rng.uniform(-limit, limit, (a, b)).astype(np.float32)), jnp.zeros(b, jnp.float32)))

    def logits(params: Any, h: Any) -> Any:
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return h

    def loss(params: Any, xb: Any, yb: Any) -> Any:
        out = logits(params, xb)
        logp = jax.nn.log_softmax(out)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1)), out

    grad = jax.value_and_grad(loss, has_aux=True)
    batch = 32
    steps = x_train.shape[0] // batch

    def step(params: Any, idx: Any) -> Any:
        xb, yb = x_train[idx], y_train[idx]
        (value, out), g = grad(params, xb, yb)
        params = jax.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)
        return params, (value * batch, jnp.sum(jnp.argmax(out, axis=1) == yb))

    @jax.jit
    def epoch(params: Any, perm: Any) -> Any:
        return jax.lax.scan(step, params, perm.reshape(steps, batch))

    @jax.jit
    def evaluate(params: Any, xs: Any, ys: Any) -> Any:
        value, out = loss(params, xs, ys)
        return value, jnp.mean(jnp.argmax(out, axis=1) == ys)

    first = None
    t_fit = time.perf_counter()
    for e in range(args.epochs):
        perm = jnp.asarray(rng.permutation(x_train.shape[0])[: steps * batch].astype(np.int32))
        params, (losses, right) = epoch(params, perm)
        train_loss, train_acc = float(losses.sum()) / (steps * batch), float(right.sum()) / (steps * batch)
        valid_loss, valid_acc = (float(v) for v in evaluate(params, x_valid, y_valid))
        if e == 0:
            first = time.perf_counter() - t_fit
    fit_s = time.perf_counter() - t_fit
    test_loss, test_acc = (float(v) for v in evaluate(params, x_test, y_test))
    record = {
        "first_epoch_s": first,
        "train_s": fit_s,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "last_epoch": [train_loss, train_acc, valid_loss, valid_acc],
        "in_process_s": time.perf_counter() - t_start,
        "jax": jax.__version__,
    }
    print(json.dumps(record))
    return 0


def data_folder(data_dir: str | None) -> Path:
    """The first folder xpnet's Fashion-MNIST search would use that holds the four files."""
    from xpnet.datasets import fashion_mnist

    for folder in fashion_mnist.candidate_dirs(data_dir):
        if all((folder / s).is_file() or (folder / f"{s}.gz").is_file() for s in FILES.values()):
            return folder
    raise SystemExit(
        "Fashion-MNIST not found (--data-dir, or apt-get install dataset-fashion-mnist, or xpnet's download)"
    )


def timed_run(cmd: list[str], env: dict[str, str], what: str) -> tuple[float, float, str]:
    """Wall seconds of the process `cmd` from start to exit, its CPU seconds ÷ wall seconds (the cores
    it kept busy), and its standard output."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    return wall, cpu / wall, done.stdout


def run_xpnet(args: argparse.Namespace, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xpnet-e2e-") as tmp:
        cmd = [sys.executable, "-m", "xpnet.apps.cli", "train", "--model", "A", "--epochs", str(args.epochs)]
        cmd += ["--no-plots", "--verbose", "0", "--out", str(Path(tmp) / "run"), "--data-dir", str(folder)]
        cmd += ["--seed", str(args.seed)]
        cmd += ["--limit", str(args.limit)] if args.limit else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        wall, used, _ = timed_run(cmd, env, "xpnet train")
        hist = json.loads((Path(tmp) / "run" / "history.json").read_text())
    return {
        "wall_s": wall,
        "cores_used": used,
        "first_epoch_s": hist["seconds"][0],
        "train_s": hist["train_wall_seconds"],
        "test_accuracy": hist["test_accuracy"],
        "threads": hist.get("blas_threads"),
    }


def run_jax(args: argparse.Namespace, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--jax-child", "--epochs", str(args.epochs)]
    cmd += ["--data-dir", str(folder), "--seed", str(args.seed)]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    wall, used, out = timed_run(cmd, env, "the JAX run")
    return {"wall_s": wall, "cores_used": used, **json.loads(out.strip().splitlines()[-1])}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def ratio_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})" if values else "—"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.jax_child:
        return jax_child(args)
    if importlib.util.find_spec("jax") is None:
        print("JAX not installed: the end-to-end comparison with JAX lax.scan is skipped (pip install jax)")
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from benchmark import BUSY, interleaved, pin_to_cores, wait_for_idle

    import xpnet

    # before any child starts: each inherits the affinity, so "--threads 1" means one core for JAX too
    cores = pin_to_cores(args.threads) if args.threads else None

    folder = data_folder(args.data_dir)
    # the CLI child imports the xpnet this script found, wherever it is started from
    root = str(Path(xpnet.__file__).resolve().parents[1])
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    if args.threads:  # read when MKL loads (at compile, before --threads applies): 1 thread, its sequential layer
        base["XPNET_BLAS_THREADS"] = str(args.threads)
    jax_env = dict(base)
    if args.threads == 1 and "XLA_FLAGS" not in base:
        jax_env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    runs = {
        "xpnet train": lambda: run_xpnet(args, folder, base),
        "JAX lax.scan": lambda: run_jax(args, folder, jax_env),
    }
    if args.no_numba:
        runs["xpnet train (XPNET_JIT=0)"] = lambda: run_xpnet(args, folder, {**base, "XPNET_JIT": "0"})
    busy_before = wait_for_idle(args.wait_idle)
    contenders = [SimpleNamespace(name=n, run=run) for n, run in runs.items()]
    res, discarded, kept, _ = interleaved(
        contenders,
        lambda c: c.run(),
        0,
        args.repeats,
        "e2e",
        args.redo,
        args.settle,  # type: ignore[arg-type]
    )
    results: dict[str, list[dict[str, Any]]] = dict(res)
    print(report(args, folder, results, discarded, kept, busy_before, BUSY, cores))
    if args.json:
        out = {"args": vars(args), "data": str(folder), "cores": cores, "results": results}
        out.update(discarded=discarded, kept=kept)
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, args.json)
    return 0


def gemm_library() -> str:
    """The BLAS the xpnet child runs its GEMMs on (it inherits this environment): MKL or NumPy's own."""
    from xpnet.backend import _cblas

    if _cblas.choice() == "openblas" or _cblas.mkl_path() is None:
        return "NumPy's BLAS"
    return "MKL, from the mkl package"


def report(
    args: argparse.Namespace,
    folder: Path,
    results: dict[str, list[dict[str, Any]]],
    discarded: list[float],
    kept: list[float],
    busy_before: float | None,
    busy: float,
    cores: list[int] | None = None,
) -> str:
    images = f"the first {args.limit:,} of 55,000" if args.limit else "55,000"
    threads = f"--threads {args.threads}" if args.threads else "each library's own thread choice"
    if args.threads:
        threads += f", pinned to core(s) {cores}" if cores else ", NOT pinned (sched_setaffinity missing or refused)"
    L = [
        f"## End to end: model A, {args.epochs} epochs on {images} Fashion-MNIST images ({folder}), {threads}",
        "",
        f"Wall clock of each whole process, {len(next(iter(results.values())))} interleaved rounds "
        "(median, min–max); first epoch as measured inside the process (JAX: compilation included); "
        "cores used: the process's CPU seconds ÷ its wall seconds.",
        "",
        "| contender | wall, process start to exit | training loop | first epoch | test accuracy | cores used |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        firsts = [x["first_epoch_s"] for x in rs if x.get("first_epoch_s") is not None]
        cells = [
            name,
            spread([x["wall_s"] for x in rs]),
            spread([x["train_s"] for x in rs]),
            spread(firsts) if firsts else "—",
            f"{statistics.median(x['test_accuracy'] for x in rs):.4f}",
            ratio_spread([x["cores_used"] for x in rs if "cores_used" in x]),
        ]
        L.append("| " + " | ".join(cells) + " |")
    jax_wall = [x["wall_s"] for x in results["JAX lax.scan"]]
    L += ["", f"xpnet's GEMMs: {gemm_library()} (XPNET_BLAS={os.environ.get('XPNET_BLAS') or 'auto'})."]
    L.append("")
    for name, rs in results.items():
        if name == "JAX lax.scan":
            continue
        ratios = [x["wall_s"] / j for x, j in zip(rs, jax_wall, strict=True)]
        med = statistics.median(ratios)
        verdict = "beats" if med < 1 else "does not beat"
        L.append(
            f"{name} ÷ JAX lax.scan, end to end: {med:.2f}× (per-round {min(ratios):.2f}–{max(ratios):.2f}): "
            f"xpnet {verdict} JAX's {args.epochs} epochs including its compilation"
        )
    notes = []
    if discarded:
        shares = ", ".join(f"{d:.0%}" for d in discarded)
        notes.append(f"{len(discarded)} round(s) discarded and re-run (others used {shares} of the CPUs)")
    if kept:
        notes.append(f"other processes during the kept rounds: max {max(kept):.0%} of the CPUs")
        if max(kept) > busy:
            notes.append("TIMINGS UNRELIABLE, rerun on an idle machine")
    if busy_before is not None:
        notes.append(f"{busy_before:.0%} just before the run")
    if notes:
        L += ["", "; ".join(notes) + "."]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
