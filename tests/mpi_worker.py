"""Run under mpiexec by tests/test_distributed.py: train model B-like with dropout, save rank 0's result.

usage: mpiexec -n N python mpi_worker.py OUT_FILE PER_RANK_BATCH [--disagree]
"""

from __future__ import annotations

import sys

import numpy as np

import xpnet
from xpnet import Dense, Dropout, Sequential
from xpnet.parity import synthetic_fashion_like


def main() -> None:
    out, batch = sys.argv[1], int(sys.argv[2])
    x, y = synthetic_fashion_like(1000)
    x = x[:, :64]
    seed = 5
    if "--disagree" in sys.argv:
        from mpi4py import MPI

        seed += MPI.COMM_WORLD.Get_rank()
    model = Sequential([Dense(32, "relu", input_shape=(64,)), Dropout(0.2), Dense(10, "softmax")], seed=seed)
    model.compile(xpnet.optimizers.Adam(0.005), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=batch, epochs=3, validation_split=0.1, verbose=0)
    if model.comm.is_root:
        np.savez(
            out,
            *model.get_weights(),
            loss=np.array(hist.history["loss"]),
            acc=np.array(hist.history["accuracy"]),
            val=np.array(hist.history["val_loss"]),
            ranks=np.array(model.comm.size),
        )


if __name__ == "__main__":
    main()
