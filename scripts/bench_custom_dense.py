"""Step time of model A (784-300-100-10) with a Dense written with `xpnet.ops` (the tape's backward) vs the
built-in Dense (hand-written backward), measured interleaved: the two models take turns, one epoch each.

    python scripts/bench_custom_dense.py [--rows 12800] [--batch 32] [--rounds 5] [--backend numpy] [--dtype float32]
                                         [--clock wall|cpu]

Prints each round's seconds per step and the medians, and the ratio custom / built-in
(issue 28 asks for at most 1.5 on NumPy). Run it on an idle machine: the numbers of a loaded one mean little.
On a shared machine `--clock cpu` (this process's CPU time; with OPENBLAS_NUM_THREADS=1 for one BLAS thread)
is steadier than wall time, which then counts the other processes' turns too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import xpnet
from xpnet import ops
from xpnet.layers import Dense, Layer


class OpsDense(Layer):
    """h = φ(x·W + b) written as Keras users write it: forward code only."""

    def __init__(self, units: int, activation: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.activation_name = units, activation

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x: Any) -> Any:
        u = ops.matmul(x, self.kernel) + self.bias
        if self.activation_name == "relu":
            return ops.relu(u)
        if self.activation_name == "softmax":
            return ops.softmax(u)
        return u


def model_a(dense: Any, dtype: str) -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            xpnet.Input((784,)),
            dense(300, activation="relu"),
            dense(100, activation="relu"),
            dense(10, activation="softmax"),
        ],
        seed=1,
        dtype=dtype,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=12800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(args.rows, 784)).astype(args.dtype)
    y = rng.integers(0, 10, args.rows)
    models = {"custom": model_a(OpsDense, args.dtype), "builtin": model_a(Dense, args.dtype)}
    for m in models.values():
        m.compile(xpnet.optimizers.SGD(0.01), "sparse_categorical_crossentropy", backend=args.backend)
        m.fit(x[: args.batch * 4], y[: args.batch * 4], batch_size=args.batch, epochs=1, verbose=0)  # warm-up
    steps = -(-args.rows // args.batch)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        for name, m in models.items():
            if m.ops is not None:
                m.ops.synchronize()
            t0 = clock()
            m.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=True)
            if m.ops is not None:
                m.ops.synchronize()
            times[name].append((clock() - t0) / steps)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1] * 1e3:.3f} ms/step" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    summary = {
        "backend": next(iter(models.values())).ops.describe(),  # type: ignore[union-attr]
        "dtype": args.dtype,
        "clock": args.clock,
        "batch": args.batch,
        "rows": args.rows,
        "median_ms_per_step": {k: round(v * 1e3, 4) for k, v in med.items()},
        "ratio_custom_over_builtin": round(med["custom"] / med["builtin"], 3),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
