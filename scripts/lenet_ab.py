#!/usr/bin/env python
"""LeNet-5 on the NumPy backend, with and without numba's compiled loops, in one process, interleaved.

Two models with the same weights train `--steps` steps of batch 32 on Fashion-MNIST and predict
3,200 test images at batch 32, alternating (the order flips every round), so the machine's drift
falls on both. Reports the median and range of the per-round ratios jit ÷ plain (time per step;
images/s). Needs numba (`pip install ".[jit]"`).

    python scripts/lenet_ab.py --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import xpnet
from xpnet import experiments
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.datasets import fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    (x, y), (xt, _) = fashion_mnist.load_data()
    x = (x[: args.steps * 32].astype(np.float32) / 255)[..., None]
    y = y[: args.steps * 32]
    xt = (xt[:3200].astype(np.float32) / 255)[..., None]
    models = {}
    for jit in (False, True):
        m = experiments.build_model("lenet", seed=0)
        ops = NumpyOps(jit=jit)
        m.compile(xpnet.optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"], backend=ops)
        m.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0)  # compiles the kernels, warms the caches
        m.predict(xt[:320], batch_size=32, verbose=0)
        models[jit] = m
    step: dict[bool, list[float]] = {False: [], True: []}
    rate: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for jit in (False, True) if r % 2 == 0 else (True, False):
            t0 = time.perf_counter()
            models[jit].fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
            step[jit].append((time.perf_counter() - t0) / args.steps * 1e3)
            t0 = time.perf_counter()
            models[jit].predict(xt, batch_size=32, verbose=0)
            rate[jit].append(len(xt) / (time.perf_counter() - t0))
    for name, d, unit in (("training step", step, "ms"), ("predict b32", rate, "k img/s")):
        if unit.startswith("k"):
            d = {k: [v / 1e3 for v in vs] for k, vs in d.items()}
        ratios = [a / b for a, b in zip(d[True], d[False], strict=True)]
        print(
            f"{name}: plain {statistics.median(d[False]):.2f} {unit}, jit {statistics.median(d[True]):.2f} {unit}; "
            f"jit ÷ plain {statistics.median(ratios):.3f} [{min(ratios):.3f}–{max(ratios):.3f}], {args.rounds} rounds"
        )


if __name__ == "__main__":
    main()
