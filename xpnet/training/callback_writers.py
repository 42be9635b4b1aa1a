"""Callbacks that write files: `ModelCheckpoint` (the model or its weights) and `CSVLogger` (a row per epoch)."""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import TextIO

from .. import argcheck
from .callback_base import Callback, Logs, improves, monitor_mode


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) every epoch or every `save_freq` steps, as Keras does.

    filepath may hold `{epoch:02d}` (1-based) and logged values such as `{val_loss:.2f}`; it ends in
    ".keras" (or a legacy ".h5" model file) for `model.save`, or ".npz" (e.g. "w.weights.npz") or
    Keras 3's ".weights.h5" with save_weights_only=True.
    save_best_only keeps writing only when `monitor` beats the best so far (strictly; Keras's rule);
    with an integer save_freq, `monitor` is read from that batch's logs (the epoch's running values).
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: int | str = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__()
        who = "ModelCheckpoint"
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, argcheck.verbosity(who, verbose)
        self.save_best_only = argcheck.boolean(who, "save_best_only", save_best_only)
        self.save_weights_only = argcheck.boolean(who, "save_weights_only", save_weights_only)
        want = (".npz", ".weights.h5") if self.save_weights_only else (".keras", ".h5")
        if not self.filepath.endswith(want) or (not self.save_weights_only and self.filepath.endswith(".weights.h5")):
            what = (
                "save_weights_only=True writes .npz or Keras .weights.h5 weights"
                if self.save_weights_only
                else "it writes .keras files, or legacy .h5 model files; .weights.h5 needs save_weights_only=True"
            )
            raise ValueError(
                f"ModelCheckpoint: filepath must end in {' or '.join(want)} ({what}), received {self.filepath!r}"
            )
        save_freq = argcheck.save_frequency(who, save_freq)
        self.save_freq = save_freq
        self.mode = monitor_mode(mode, monitor, "ModelCheckpoint")
        self._better = improves(self.mode, 0.0)
        default = math.inf if self.mode == "min" else -math.inf
        threshold = initial_value_threshold
        self.best = default if threshold is None else argcheck.number(who, "initial_value_threshold", threshold)
        self._epoch = 0
        self._steps = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if isinstance(self.save_freq, int):
            self._steps += 1
            if self._steps % self.save_freq == 0:  # only now are the batch logs read from the device
                self._save(self._epoch, logs if logs is not None else {}, batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def _save(self, epoch: int, logs: Logs, batch: int | None = None) -> None:
        model = self.model
        assert model is not None
        fields = dict(logs)
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            path = self.filepath.format(epoch=epoch + 1, **fields)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint: {self.filepath!r} names {e}, which the logs {sorted(logs)} lack") from e
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(
                    f"ModelCheckpoint: {self.monitor!r} is not in the logs {sorted(logs)}; skipping", stacklevel=2
                )
                return
            if not self._better(current, self.best):
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                change = f"{self.monitor} improved from {self.best:.5f} to {current:.5f}"
                print(f"\nEpoch {epoch + 1}: {change}, saving the model to {path}")
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if model.comm.is_root:
            folder = os.path.dirname(path)
            if folder:  # as Keras, the checkpoint's folder is made when it does not exist
                os.makedirs(folder, exist_ok=True)
            if self.save_weights_only:
                model.save_weights(path)
            else:
                model.save(path)


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row (epoch, then the keys in sorted order), as Keras does."""

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, received {separator!r}")
        self.filename, self.sep = Path(filename), separator
        self.append = argcheck.boolean("CSVLogger", "append", append)
        self._keys: list[str] | None = None
        self._file: TextIO | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        existing = self.append and self.filename.is_file() and self.filename.stat().st_size > 0
        self._keys = None
        if existing:
            with self.filename.open() as f:
                self._keys = next(csv.reader(f, delimiter=self.sep))[1:]
        self._file = self.filename.open("a" if self.append else "w", newline="")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        assert self._file is not None
        logs = logs or {}
        writer = csv.writer(self._file, delimiter=self.sep)
        if self._keys is None:
            self._keys = sorted(logs)
            writer.writerow(["epoch", *self._keys])
        writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
