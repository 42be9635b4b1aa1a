"""Run under mpiexec by tests/test_layer_state.py: one data-parallel step of a BatchNormalization model.

usage: mpiexec -n 2 python mpi_bn_worker.py OUT_PREFIX [short]   (each rank writes OUT_PREFIX.<rank>.npz)

short: 33 samples, so the second step's global batch is one row and rank 0's shard is empty; the
Dense layer is frozen so the row BatchNormalization sees is known.
"""

from __future__ import annotations

import sys

import numpy as np

from xpnet import BatchNormalization, Dense, Sequential
from xpnet.parity import synthetic_fashion_like


def main() -> None:
    short = sys.argv[2:] == ["short"]
    x, y = synthetic_fashion_like(33 if short else 32)
    x = x[:, :64]
    model = Sequential([Dense(8, input_shape=(64,)), BatchNormalization(momentum=0.0), Dense(10, "softmax")], seed=3)
    model.layers[0].trainable = not short
    model.compile("sgd", "sparse_categorical_crossentropy")
    kernel, bias = model.get_weights()[:2]
    h = x.astype(np.float64) @ kernel + bias  # what BatchNormalization sees in the one step
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.savez(f"{sys.argv[1]}.{model.comm.rank}.npz", *model.get_weights(), h=h, ranks=np.array(model.comm.size))


if __name__ == "__main__":
    main()
