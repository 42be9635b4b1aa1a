"""`TrainState`: where a fit stands, in public names that callbacks and checkpoints read and write."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .callbacks import History

if TYPE_CHECKING:
    from ..layers.base import Layer

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
    The optimizer's step count is `model.optimizer.iterations`; the other step counters are the
    `iterations` of the layers that count steps (`step_counters`).
    """

    epoch: int = 0
    step: int = 0
    epochs_trained: int = 0
    samples: int = 0
    batch_size: int = 0
    running: list[Array] = field(default_factory=list)
    history: History = field(default_factory=History)

    def start(self, epoch: int, samples: int, batch_size: int) -> None:
        """A new fit from `epoch`: no steps run, no sums, a fresh History."""
        self.samples, self.batch_size = samples, batch_size
        self.epoch, self.step, self.running, self.history = epoch, 0, [], History()

    def end_epoch(self) -> None:
        self.epoch, self.step, self.running = self.epoch + 1, 0, []
        self.epochs_trained += 1


def step_counted(layers: Iterable[Layer]) -> list[Any]:
    """The layers that count their training calls (`Layer.counts_steps`: Dropout), each with
    `iterations` (int, read from the device) and `row_offset`; a custom layer's sublayers count too."""
    from ..layers.custom import sublayers

    found: list[Any] = []
    for layer in layers:
        if layer.counts_steps:
            found.append(layer)
        if layer.keras_call:
            found += step_counted(sub for _, sub in sublayers(layer))
    return found


def step_counters(layers: Iterable[Layer]) -> dict[str, int]:
    """{layer name: training calls so far} for the layers that count them."""
    return {layer.name: layer.iterations for layer in step_counted(layers)}


def set_step_counters(layers: Iterable[Layer], counters: Mapping[str, int]) -> None:
    """Set each counting layer's `iterations` from counters[its name] (every one must be there)."""
    for layer in step_counted(layers):
        layer.iterations = counters[layer.name]
