#!/usr/bin/env python3
"""xpnet's BLAS thread policy against fixed thread counts: model A, idle and beside a busy process.

    python scripts/threads_benchmark.py                  # ~2 min on a 2-core machine
    python scripts/threads_benchmark.py --repeats 3 --steps-small 500 --steps-large 100

Scenarios: one process at batch 32 (the course's setting), 2 MPI ranks at batch 512 each and
one process at batch 1024 (the same global batch). Each runs idle and beside one busy process
(a Python busy loop), with xpnet's default policy, with OPENBLAS_NUM_THREADS=1 and with
OPENBLAS_NUM_THREADS=<cores> (what the BLAS does when nobody chooses). Contenders are
interleaved within each repeat; the table gives the best ms per step over the repeats and each
setting's time over the best of its row group. The policy's aim: default <= 1.2x the best.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(batch: int, steps: int) -> None:
    """Time `steps` training steps of model A (after a short warm-up); rank 0 prints one JSON line."""
    import numpy as np

    import xpnet
    from xpnet import threads
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
    ranks = model.comm.size
    n = min(len(x), steps * batch * ranks)
    model.fit(x[: 10 * batch * ranks], y[: 10 * batch * ranks], batch_size=batch, epochs=1, verbose=0)
    decision = threads.decide(threads.macs_per_sample(model), batch, ranks)  # what the fit below will decide
    t0 = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)
    seconds = time.perf_counter() - t0
    if model.comm.is_root:
        done = -(-n // (batch * ranks))
        print(json.dumps({"ms_per_step": 1e3 * seconds / done, "decision": str(decision)}), flush=True)


SCENARIOS = (
    ("1 rank, batch 32", 1, 32, "small"),
    ("2 ranks x 512", 2, 512, "large"),
    ("1 rank, 1024", 1, 1024, "large"),
)


def run_one(ranks: int, batch: int, steps: int, env_threads: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env.pop("XPNET_BLAS_THREADS", None)
    if env_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env_threads
    cmd = [sys.executable, __file__, "--worker", "--batch", str(batch), "--steps", str(steps)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps-small", type=int, default=400, help="steps at batch 32 (default 400)")
    p.add_argument("--steps-large", type=int, default=60, help="steps at global batch 1024 (default 60)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=100, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.batch, args.steps)
        return 0

    from xpnet.threads import usable_cores

    cores = usable_cores()
    settings = (("default", None), ("OPENBLAS=1", "1"), (f"OPENBLAS={cores}", str(cores)))
    best: dict[tuple[str, str, str], float] = {}
    decisions: dict[tuple[str, str], str] = {}
    for rep in range(args.repeats):
        for load in ("idle", "busy"):
            busy = None
            if load == "busy":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                for title, ranks, batch, size in SCENARIOS:
                    steps = args.steps_small if size == "small" else args.steps_large
                    order = settings if rep % 2 == 0 else tuple(reversed(settings))
                    for name, value in order:
                        r = run_one(ranks, batch, steps, value)
                        key = (title, load, name)
                        best[key] = min(best.get(key, float("inf")), float(r["ms_per_step"]))  # type: ignore[arg-type]
                        if value is None:
                            decisions[(title, load)] = str(r["decision"])
                        print(
                            f"  repeat {rep + 1}: {title}, {load}, {name}: {r['ms_per_step']:.2f} ms/step", flush=True
                        )
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            time.sleep(0.5)

    names = [name for name, _ in settings]
    print(f"\nmodel A, ms per step (best of {args.repeats}); x: over the best setting of the row; {cores} cores")
    head = f"{'scenario':<17} {'load':<5}" + "".join(f" {n:>17}" for n in names)
    print(head)
    print("-" * len(head))
    worst = 0.0
    for title, *_ in SCENARIOS:
        for load in ("idle", "busy"):
            row = [best[(title, load, n)] for n in names]
            low = min(row)
            worst = max(worst, row[0] / low)
            print(f"{title:<17} {load:<5}" + "".join(f" {v:10.2f} {v / low:5.2f}x" for v in row))
    print("\ndefault chose:")
    for (title, load), d in decisions.items():
        print(f"  {title}, {load}: {d}")
    print(f"\ndefault / best, worst case: {worst:.2f}x (aim <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
