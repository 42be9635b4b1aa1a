#!/usr/bin/env python3
"""Data-parallel scaling on this machine: 1 vs N MPI ranks, one BLAS thread per rank.

    python scripts/scaling.py --ranks 1 2 --global-batch 1024

Runs itself under `mpiexec -n N` for each N, times training epochs of the course's model A at
a fixed global batch, and times the per-step Allreduce of the flat gradient alone. Prints a
table and the numbers the cost model in docs/scaling.md rests on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def worker(global_batch: int, epochs: int) -> None:
    import xpnet
    from xpnet.callbacks import Callback
    from xpnet.experiments import build_model

    try:
        from xpnet.datasets import fashion_mnist

        (x, y), _ = fashion_mnist.load_data(download=False)
        x, y = (x[5000:] / np.float32(255)).astype(np.float32), y[5000:]
    except Exception:
        from xpnet.parity import synthetic_fashion_like

        x, y = synthetic_fashion_like(55000)
        x = x.reshape(-1, 28, 28)
    model = build_model("A", seed=0)
    model.compile(xpnet.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    comm = model.comm
    per_rank = global_batch // comm.size

    class Timer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    model.fit(x, y, batch_size=per_rank, epochs=epochs + 1, verbose=0, callbacks=[timer])
    steps = -(-len(x) // global_batch)
    # the Allreduce alone, on a buffer the size of the model's gradient
    grads = np.ones(model.count_params(), np.float32)
    reduce_s = 0.0
    if comm.size > 1:
        from mpi4py import MPI

        c = MPI.COMM_WORLD
        for _ in range(5):
            c.Allreduce(MPI.IN_PLACE, grads)
        c.Barrier()
        t = time.perf_counter()
        for _ in range(200):
            c.Allreduce(MPI.IN_PLACE, grads)
        reduce_s = (time.perf_counter() - t) / 200
    if comm.is_root:
        epoch_s = float(np.median(timer.times[1:]))
        print(
            json.dumps(
                {
                    "ranks": comm.size,
                    "global_batch": global_batch,
                    "per_rank_batch": per_rank,
                    "epoch_s": epoch_s,
                    "steps": steps,
                    "step_ms": 1e3 * epoch_s / steps,
                    "allreduce_ms": 1e3 * reduce_s,
                    "grad_bytes": int(grads.nbytes),
                }
            )
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--global-batch", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.global_batch, args.epochs)
        return 0
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "XPNET_BACKEND": "numpy"}
    rows = []
    from tqdm.auto import tqdm

    for n in tqdm(args.ranks, desc="ranks", unit="run", disable=None):
        cmd = [mpiexec, "-n", str(n), sys.executable, __file__, "--worker"]
        cmd += ["--global-batch", str(args.global_batch), "--epochs", str(args.epochs)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["epoch_s"]
    print(f"\nmodel A, global batch {args.global_batch}, one BLAS thread per rank, {os.cpu_count()} cores")
    print(f"{'ranks':>5} {'per-rank batch':>14} {'s/epoch':>8} {'ms/step':>8} {'allreduce ms':>12} {'speed-up':>8}")
    for r in rows:
        print(
            f"{r['ranks']:>5} {r['per_rank_batch']:>14} {r['epoch_s']:>8.3f} {r['step_ms']:>8.2f} "
            f"{r['allreduce_ms']:>12.3f} {base / r['epoch_s']:>8.2f}"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
