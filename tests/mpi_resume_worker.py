"""Run under mpiexec by tests/test_distributed.py: a data-parallel run that checkpoints, crashes, resumes.

usage: mpiexec -n N python mpi_resume_worker.py CKPT_DIR OUT_FILE full|crash|resume
"""

from __future__ import annotations

import sys

import numpy as np

import xpnet
from xpnet.callbacks import Callback
from xpnet.checkpoint import Checkpoint


class Crash(Callback):
    def on_train_batch_end(self, batch: int, logs: None = None) -> None:
        assert self.model is not None and self.model.optimizer is not None
        if self.model.optimizer.iterations == 10:
            raise SystemExit(0)  # every rank stops at the same step, after the checkpoint at step 9


def main() -> None:
    ckpt, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    m = xpnet.Sequential(
        [xpnet.Dense(8, "relu", input_shape=(5,)), xpnet.Dropout(0.2), xpnet.Dense(3, "softmax")], seed=3
    )
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    cbs: list[Callback] = [Checkpoint(ckpt, save_freq=3)]
    if mode == "crash":
        cbs.append(Crash())
    h = m.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=cbs, resume_from=ckpt if mode == "resume" else None)
    if m.comm.is_root:
        np.savez(out, *m.get_weights(), loss=np.array(h.history["loss"]), acc=np.array(h.history["accuracy"]))


if __name__ == "__main__":
    main()
