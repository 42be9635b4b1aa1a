"""`TrainState`: where a fit stands, in public names that callbacks and checkpoints read and write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .callbacks import History

Array = Any


@dataclass
class TrainState:
    """The position of a run, besides the weights and the optimizer's slots.

    epoch: the epoch in progress (0-based); once it ends, the next one.
    step: training steps of `epoch` done so far.
    epochs_trained: epochs over the model's life; keys the next epoch's shuffle, so repeated
        fit() calls see new orders and a resumed run sees the same ones.
    samples, batch_size: the data size and per-rank batch size of the current fit (a resume
        must match them).
    running: the device sums [loss, *metric states] of `epoch` so far (`Trainer.read_logs`
        turns them into numbers).
    history: the History of this fit, with any epochs restored from a checkpoint.
    The optimizer's step count is `model.optimizer.iterations`; the dropout counters are the
    Dropout layers' `iterations`.
    """

    epoch: int = 0
    step: int = 0
    epochs_trained: int = 0
    samples: int = 0
    batch_size: int = 0
    running: list[Array] = field(default_factory=list)
    history: History = field(default_factory=History)

    def end_epoch(self) -> None:
        self.epoch, self.step, self.running = self.epoch + 1, 0, []
        self.epochs_trained += 1
