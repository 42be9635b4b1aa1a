"""Fingerprints of seeded eager NumPy fits: a change that must not move the eager numbers prints the same lines.

    OPENBLAS_NUM_THREADS=1 python scripts/eager_fingerprint.py        # run before and after, compare

Model A (784-300-100-10, SGD 0.01) and model B (784-128-Dropout(0.2)-10, Adam), batch 32, on
synthetic data of Fashion-MNIST's shape with a short last batch; each line is a SHA-256 of the
final weights and of the history's numbers (at one BLAS thread, so the sums' order is fixed).
"""

from __future__ import annotations

import hashlib
import os
import sys

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet.layers import Dense, Dropout  # noqa: E402


def fingerprint(kind: str) -> str:
    rng = np.random.default_rng(3)
    x = rng.random((1000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 1000)
    if kind == "A":
        layers = [Dense(300, "relu", input_shape=(784,)), Dense(100, "relu"), Dense(10, "softmax")]
        opt: object = xpnet.optimizers.SGD(0.01)
    else:
        layers = [Dense(128, "relu", input_shape=(784,)), Dropout(0.2), Dense(10, "softmax")]
        opt = "adam"
    model = xpnet.Sequential(layers, seed=5)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    h.update(repr(sorted(history.history.items())).encode())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    for kind in ("A", "B"):
        print(f"model {kind}: {fingerprint(kind)}")
