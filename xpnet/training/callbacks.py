"""Callbacks: the History every `fit` returns, EarlyStopping, the learning-rate schedules, and the progress display.

The protocol and its plumbing live in `callback_base`, the file writers (ModelCheckpoint, CSVLogger) in
`callback_writers`, the progress display in `progress`; every name stays importable from here."""

from __future__ import annotations

import math
import warnings
from typing import Any

from .. import argcheck
from .callback_base import (
    BatchLogs,
    Callback,
    CallbackList,
    History,
    HoldingCallback,
    Logs,
    improves,
    monitor_mode,
    overrides,
    run_hooks,
)
from .callback_writers import CSVLogger, ModelCheckpoint
from .progress import Progress, format_logs

__all__ = [
    "BatchLogs",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "HoldingCallback",
    "LambdaCallback",
    "LearningRateScheduler",
    "Logs",
    "ModelCheckpoint",
    "Progress",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "format_logs",
    "overrides",
    "run_hooks",
]


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'auto', 'min' or 'max', received {mode!r}")
        if mode == "auto":
            mode = "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall")) else "min"
        who = "EarlyStopping"
        self.monitor, self.mode = monitor, mode
        self.min_delta = abs(argcheck.number(who, "min_delta", min_delta))
        self.patience, self.verbose = argcheck.integer(who, "patience", patience), argcheck.verbosity(who, verbose)
        self.baseline = None if baseline is None else argcheck.number(who, "baseline", baseline)
        self.restore_best_weights = argcheck.boolean(who, "restore_best_weights", restore_best_weights)
        self.start_from_epoch = argcheck.integer(who, "start_from_epoch", start_from_epoch)
        self.stopped_epoch = 0

    def _improved(self, value: float, ref: float) -> bool:
        return value < ref - self.min_delta if self.mode == "min" else value > ref + self.min_delta

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch = 0, 0
        self.best_weights: list[Any] | None = None
        self.best = self.baseline if self.baseline is not None else (math.inf if self.mode == "min" else -math.inf)
        self.best_epoch = 0
        # a resumed fit starts with the history so far: replay it so patience continues where it was
        assert self.model is not None
        hist = self.model.train_state.history
        past = hist.history.get(self.monitor, [])
        for epoch, value in zip(hist.epoch, past, strict=False):
            if epoch < self.start_from_epoch or not math.isfinite(value):
                continue
            if self._improved(value, self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0
            else:
                self.wait += 1
        if past and self.restore_best_weights:
            warnings.warn(
                f"EarlyStopping resumed at epoch {len(past) + 1}: weights of a best epoch before the resume "
                "were not checkpointed, so only a later best epoch can be restored",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None and self.model is not None and self.model.stop_training:
            return  # training already stopped (a non-finite loss): no validation pass was run
        if value is None:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r} but the logs only have {sorted(logs or {})}; "
                "pass validation data for val_ metrics, or choose another monitor"
            )
        if epoch < self.start_from_epoch:
            return
        assert self.model is not None
        if self._improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:  # as Keras: stop after `patience` epochs without improvement
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        assert self.model is not None
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """At each epoch's start set the learning rate to schedule(epoch, lr) (or schedule(epoch)), as Keras.

    The rate is a device value the step reads, so changing it costs no re-recording of a GPU step.
    """

    def __init__(self, schedule: Any, verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be a function of (epoch, lr), received {schedule!r}")
        self.schedule, self.verbose = schedule, argcheck.verbosity("LearningRateScheduler", verbose)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        opt = self.model.optimizer if self.model is not None else None
        if opt is None:
            raise ValueError("LearningRateScheduler needs a compiled model")
        try:
            lr = self.schedule(epoch, opt.learning_rate)
        except TypeError:  # schedule(epoch), Keras 1 style
            lr = self.schedule(epoch)
        lr = float(lr)
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned {lr} for epoch {epoch}; it must be > 0")
        opt.learning_rate = lr
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None and self.model is not None and self.model.optimizer is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved for `patience` epochs (Keras's rule).

    After a reduction, `cooldown` epochs pass before counting again; the rate never goes below `min_lr`.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        who = "ReduceLROnPlateau"
        self.monitor, self.factor = monitor, argcheck.number(who, "factor", factor, 0, 1, low_open=True, high_open=True)
        self.patience, self.verbose = argcheck.integer(who, "patience", patience), argcheck.verbosity(who, verbose)
        self.mode = monitor_mode(mode, monitor, who)
        self.min_delta = argcheck.number(who, "min_delta", min_delta, 0)
        self.cooldown = argcheck.integer(who, "cooldown", cooldown)
        self.min_lr = argcheck.number(who, "min_lr", min_lr, 0)
        self._better = improves(self.mode, self.min_delta)
        self.on_train_begin()

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.cooldown_counter = 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        opt = self.model.optimizer if self.model is not None else None
        assert opt is not None
        logs = logs if logs is not None else {}
        logs["learning_rate"] = opt.learning_rate
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"ReduceLROnPlateau monitors {self.monitor!r}, not in the logs {sorted(logs)}", RuntimeWarning, 2
            )
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and opt.learning_rate > self.min_lr:
                new = max(opt.learning_rate * self.factor, self.min_lr)
                opt.learning_rate = new
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop training as soon as the running loss is NaN or inf.

    Checking means reading the loss from the device: every `check_every` steps (1, as Keras,
    costs a device→host copy per step on a GPU). `fit` itself also stops, with a warning, at the
    progress bar's reads and at each epoch's end.
    """

    def __init__(self, check_every: int = 1) -> None:
        super().__init__()
        self.check_every = argcheck.integer("TerminateOnNaN", "check_every", check_every, 1)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        model = self.model
        assert model is not None and model.ops is not None
        if (batch + 1) % self.check_every or not model.train_state.running:
            return
        loss = float(model.ops.to_numpy(model.train_state.running[0]))
        if not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            model.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions, called as Keras calls them: on_epoch_begin(epoch, logs),
    on_epoch_end(epoch, logs), on_train_begin(logs), on_train_end(logs), on_train_batch_begin(batch, logs),
    on_train_batch_end(batch, logs), and likewise the on_batch_*, on_test_* and on_predict_* hooks
    (batch-end logs are read from the device only if the function looks at them)."""

    _HOOKS = (
        "on_epoch_begin",
        "on_epoch_end",
        "on_train_begin",
        "on_train_end",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_batch_begin",
        "on_batch_end",
        "on_test_begin",
        "on_test_end",
        "on_test_batch_begin",
        "on_test_batch_end",
        "on_predict_begin",
        "on_predict_end",
        "on_predict_batch_begin",
        "on_predict_batch_end",
    )

    def __init__(self, **hooks: Any) -> None:
        super().__init__()
        unknown = set(hooks) - set(self._HOOKS)
        if unknown:
            raise ValueError(f"LambdaCallback: unknown hook(s) {sorted(unknown)}; known: {list(self._HOOKS)}")
        self.hooks = {k: fn for k, fn in hooks.items() if fn is not None}
        for name in self.hooks:  # only the given hooks count as overridden (batch hooks cost a call per step)
            setattr(self, name, self._caller(name))

    def _caller(self, name: str) -> Any:
        fn = self.hooks[name]
        if "batch" not in name and "epoch" not in name:
            return lambda logs=None: fn(logs)
        return lambda index, logs=None: fn(index, logs)

    def __repr__(self) -> str:
        return f"LambdaCallback(hooks={sorted(self.hooks)})"
