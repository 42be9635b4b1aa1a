"""Run under mpiexec by tests/test_distributed.py: train model B-like with dropout, save rank 0's result.

usage: mpiexec -n N python mpi_worker.py OUT_FILE PER_RANK_BATCH [--disagree] [--functional]

--functional trains a two-input, two-output graph (a residual Add, Dropout, a weighted second loss).
"""

from __future__ import annotations

import sys
from typing import Any

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
    if "--functional" in sys.argv:
        a, b = xpnet.Input((32,), name="a"), xpnet.Input((32,), name="b")
        h = xpnet.layers.Add()([Dense(32, "relu")(a), Dropout(0.2)(Dense(32, "relu")(b))])
        model: Any = xpnet.Model([a, b], [Dense(10, "softmax", name="cls")(h), Dense(1, name="mean")(h)], seed=seed)
        model.compile(
            xpnet.optimizers.Adam(0.005),
            ["sparse_categorical_crossentropy", "mse"],
            loss_weights=[1.0, 0.5],
            metrics=[["accuracy"], []],
        )
        inputs: Any = [x[:, :32], x[:, 32:]]
        targets: Any = [y, x.mean(axis=1, keepdims=True)]
        acc = "cls_accuracy"
    else:
        model = Sequential([Dense(32, "relu", input_shape=(64,)), Dropout(0.2), Dense(10, "softmax")], seed=seed)
        model.compile(xpnet.optimizers.Adam(0.005), "sparse_categorical_crossentropy", metrics=["accuracy"])
        inputs, targets, acc = x, y, "accuracy"
    hist = model.fit(inputs, targets, batch_size=batch, epochs=3, validation_split=0.1, verbose=0)
    if model.comm.is_root:
        np.savez(
            out,
            *model.get_weights(),
            loss=np.array(hist.history["loss"]),
            acc=np.array(hist.history[acc]),
            val=np.array(hist.history["val_loss"]),
            ranks=np.array(model.comm.size),
        )


if __name__ == "__main__":
    main()
