"""Helper process for the checkpoint tests: train, optionally resume, save final weights.

usage: python resume_worker.py CKPT_DIR OUT_FILE [--resume] [--slow]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import xpnet
from xpnet import Dense, Dropout, Sequential
from xpnet.callbacks import Callback
from xpnet.checkpoint import Checkpoint


class Slow(Callback):
    def on_train_batch_end(self, batch: int, logs: None = None) -> None:
        time.sleep(0.02)  # gives the parent time to kill us mid-epoch


def main() -> None:
    ckpt_dir, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 12)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    model = Sequential([Dense(32, "relu", input_shape=(12,)), Dropout(0.3), Dense(3, "softmax")], seed=7)
    model.compile(xpnet.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks: list[Callback] = [Checkpoint(ckpt_dir, save_freq=5, keep=3)]
    if "--slow" in sys.argv:
        callbacks.append(Slow())
    hist = model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        validation_split=0.1,
        callbacks=callbacks,
        resume_from=ckpt_dir if "--resume" in sys.argv else None,
    )
    np.savez(out, *model.get_weights(), loss=np.array(hist.history["loss"]))


if __name__ == "__main__":
    main()
