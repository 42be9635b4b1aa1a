"""Callbacks: the History every `fit` returns, EarlyStopping, and the progress display."""

from __future__ import annotations

import csv
import functools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import argcheck

if TYPE_CHECKING:
    from .protocol import TrainableModel


Logs = dict[str, Any]


class Callback:
    """Base class, as Keras's: every hook receives `logs`, a dict (never None).

    Epoch-end logs hold the epoch's loss and metrics (and val_ ones); batch-end logs hold the
    running loss and metrics of the epoch so far, read from the device only when a callback
    looks at them (see `BatchLogs`); begin hooks get {}. `on_test_*` run in `evaluate` and in
    fit's validation pass, `on_predict_*` in `predict` (batch-end logs: {"outputs": array}).
    `on_train_batch_*` call the older `on_batch_*` names by default, as Keras does.
    """

    def __init__(self) -> None:
        self.model: TrainableModel | None = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: TrainableModel) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_begin(self, logs: Logs | None = None) -> None: ...
    def on_predict_end(self, logs: Logs | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def overrides(cb: Callback, hook: str) -> bool:
    """Whether `cb` does something in `hook` (its class or the instance defines it, or its older alias)."""

    def own(name: str) -> bool:
        return getattr(type(cb), name) is not getattr(Callback, name) or name in vars(cb)

    return own(hook) or (hook in _ALIASES and own(_ALIASES[hook]))


class BatchLogs(dict):  # type: ignore[type-arg]
    """A batch's logs, filled from the device the first time anything looks at them.

    A callback that overrides a batch hook but never reads its logs (ModelCheckpoint between
    saves, a step counter) so costs no device→host copy; one that prints `logs["loss"]` pays
    one read for that batch.
    """

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        super().__init__()
        self._pending: Callable[[], dict[str, float]] | None = read

    def detach(self) -> None:
        """Read copies of the device sums from now on (their memory is about to be written again)."""
        read = self._pending
        if isinstance(read, functools.partial) and read.args:
            copies = [s.copy() for s in read.args[0]]
            self._pending = functools.partial(read.func, copies, *read.args[1:], **read.keywords)

    def _fill(self) -> None:
        read, self._pending = self._pending, None
        if read is not None:
            dict.update(self, read())


def _filling(name: str) -> Any:
    method = getattr(dict, name)

    def wrapped(self: BatchLogs, *args: Any, **kwargs: Any) -> Any:
        self._fill()
        return method(self, *args, **kwargs)

    wrapped.__name__ = name
    return wrapped


for _name in (
    "__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__", "__repr__", "__eq__",
    "__ne__", "__or__", "__ror__", "__ior__", "__reversed__", "keys", "values", "items", "get", "copy", "pop",
    "popitem", "setdefault", "update", "clear",
):  # fmt: skip
    setattr(BatchLogs, _name, _filling(_name))


def run_hooks(callbacks: Sequence[Callback], hook: str, *args: Any) -> None:
    """Call `hook` on every callback that overrides it."""
    for cb in callbacks:
        if overrides(cb, hook):
            getattr(cb, hook)(*args)


class CallbackList:
    """A run's callbacks, with the callbacks that override each per-batch hook found once.

    `batch_hooks` names the hooks looked up at the start (as Keras's CallbackList does), so a
    step pays nothing for callbacks that ignore them and makes no batch logs nobody reads.
    """

    def __init__(self, callbacks: Sequence[Callback], batch_hooks: Sequence[str] = ()) -> None:
        self.callbacks = list(callbacks)
        self._hooked = {hook: [cb for cb in self.callbacks if overrides(cb, hook)] for hook in batch_hooks}

    def bind(self, model: TrainableModel, params: dict[str, Any] | None = None) -> None:
        """set_model (and set_params, when given) on each callback in turn."""
        for cb in self.callbacks:
            cb.set_model(model)
            if params is not None:
                cb.set_params(params)

    def every(self, hook: str, *args: Any, own_logs: bool = False) -> None:
        """Call `hook` on every callback (fit's train and epoch hooks).

        own_logs: each callback gets its own copy of the logs (the last argument), as for the
        begin and train-end hooks; else they share one dict (epoch end: History sees what later
        callbacks add).
        """
        for cb in self.callbacks:
            if own_logs:
                getattr(cb, hook)(*args[:-1], dict(args[-1]))
            else:
                getattr(cb, hook)(*args)

    def wants(self, hook: str) -> bool:
        """Whether some callback overrides batch hook `hook` (else its logs need not be made)."""
        return bool(self._hooked[hook])

    def batch(self, hook: str, index: int, logs: Any = None) -> None:
        """Call batch hook `hook` on the callbacks that override it, with `logs` (shared; None: an empty
        dict of its own for each callback, as the begin hooks get)."""
        for cb in self._hooked[hook]:
            getattr(cb, hook)(index, {} if logs is None else logs)

    def release(self) -> None:
        """Free what the callbacks hold for the run (a Checkpoint's folder lock), also after an error."""
        for cb in self.callbacks:
            if isinstance(cb, HoldingCallback):
                cb.release()

    def __repr__(self) -> str:
        return f"CallbackList({self.callbacks!r})"


class HoldingCallback(Callback):
    """A callback that holds something from on_train_begin to on_train_end (a folder lock):
    fit calls `release` also when training stops on an error, where on_train_end does not run."""

    def release(self) -> None:
        """Let go of what on_train_begin took."""


class History(Callback):
    """`history.history` maps each logged name to its per-epoch list; `history.epoch` lists epoch indices."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        self._last = logs

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._late_keys()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._late_keys()

    def _late_keys(self) -> None:
        """Keys a later callback added to the last epoch's logs (e.g. ReduceLROnPlateau's learning_rate).

        History runs first, so that a checkpoint at the epoch's end already holds the epoch.
        """
        last = self.__dict__.pop("_last", None) or {}
        for k, v in last.items():
            values = self.history.setdefault(k, [])
            if len(values) < len(self.epoch):
                values.extend([math.nan] * (len(self.epoch) - 1 - len(values)))
                values.append(v)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


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


def _improves(mode: str, min_delta: float) -> Any:
    """Keras's monitor_op: a < b − δ in "min" mode, a > b + δ in "max" mode."""
    if mode == "min":
        return lambda a, b: a < b - min_delta
    return lambda a, b: a > b + min_delta


def _mode(mode: str, monitor: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who} mode must be 'auto', 'min' or 'max', received {mode!r}")
    if mode == "auto":
        return "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall", "f1")) else "min"
    return mode


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
        self.mode = _mode(mode, monitor, "ModelCheckpoint")
        self._better = _improves(self.mode, 0.0)
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
        self.mode = _mode(mode, monitor, who)
        self.min_delta = argcheck.number(who, "min_delta", min_delta, 0)
        self.cooldown = argcheck.integer(who, "cooldown", cooldown)
        self.min_lr = argcheck.number(who, "min_lr", min_lr, 0)
        self._better = _improves(self.mode, self.min_delta)
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


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}ms" if seconds < 1.0 else f"{seconds:.0f}s"


class Progress:
    """Keras-style progress: a tqdm bar per epoch on a terminal, else one line per epoch.

    The loop calls `due()` every step; only when it returns True (a few times a second) does
    the model read the running loss and metrics from the device, so the bar never forces a
    sync per step.
    """

    interval = 0.25

    def __init__(self, verbose: int | str, epochs: int, steps: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if verbose == "auto":
            verbose = 1 if tty else 2
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', received {verbose!r}")
        self.mode = 0 if verbose == 0 else (1 if verbose == 1 and tty else 2)
        self.epochs, self.steps = epochs, steps
        self.bar: Any = None
        self._next = 0.0

    def epoch_begin(self, epoch: int) -> None:
        self.t0 = time.perf_counter()
        self._next = self.t0 + self.interval
        if self.mode == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.steps,
                desc=f"Epoch {epoch + 1}/{self.epochs}",
                unit="step",
                file=self.stream,
                leave=True,
                dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} |{bar:20}| {elapsed}<{remaining}{postfix}",
            )

    def due(self) -> bool:
        if self.mode != 1:
            return False
        now = time.perf_counter()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True

    def update(self, step: int, logs: dict[str, float]) -> None:
        """Show progress after `step` steps with running values `logs`."""
        per_step = (time.perf_counter() - self.t0) / max(step, 1)
        self.bar.set_postfix_str(f"{_fmt_time(per_step)}/step - {format_logs(logs)}", refresh=False)
        self.bar.update(step - self.bar.n)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        elapsed = time.perf_counter() - self.t0
        per_step = elapsed / max(self.steps, 1)
        if self.mode == 1:
            self.bar.total = self.steps  # a stream of unknown length learns it at the epoch's end
            self.bar.set_postfix_str(f"{_fmt_time(per_step)}/step - {format_logs(logs)}", refresh=False)
            self.bar.update(self.steps - self.bar.n)
            self.bar.close()
        elif self.mode == 2:
            print(
                f"Epoch {epoch + 1}/{self.epochs} - {self.steps}/{self.steps} - {elapsed:.0f}s - "
                f"{_fmt_time(per_step)}/step - {format_logs(logs)}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
