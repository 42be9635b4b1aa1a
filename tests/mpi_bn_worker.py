"""Run under mpiexec by tests/test_layer_state.py: one data-parallel step of a BatchNormalization model.

usage: mpiexec -n 2 python mpi_bn_worker.py OUT_PREFIX   (each rank writes OUT_PREFIX.<rank>.npz)
"""

from __future__ import annotations

import sys

import numpy as np

from xpnet import BatchNormalization, Dense, Sequential
from xpnet.parity import synthetic_fashion_like


def main() -> None:
    x, y = synthetic_fashion_like(32)
    x = x[:, :64]
    model = Sequential([Dense(8, input_shape=(64,)), BatchNormalization(momentum=0.0), Dense(10, "softmax")], seed=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    kernel, bias = model.get_weights()[:2]
    h = x.astype(np.float64) @ kernel + bias  # what BatchNormalization sees in the one step
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.savez(f"{sys.argv[1]}.{model.comm.rank}.npz", *model.get_weights(), h=h, ranks=np.array(model.comm.size))


if __name__ == "__main__":
    main()
