"""The callback protocol and its plumbing: `Callback`, `CallbackList` (which hooks run, and when the
batch logs are read), `BatchLogs`, `History` (every `fit` returns one), and the monitor helpers the
built-in callbacks share."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

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


def improves(mode: str, min_delta: float) -> Any:
    """Keras's monitor_op: a < b − δ in "min" mode, a > b + δ in "max" mode."""
    if mode == "min":
        return lambda a, b: a < b - min_delta
    return lambda a, b: a > b + min_delta


def monitor_mode(mode: str, monitor: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who} mode must be 'auto', 'min' or 'max', received {mode!r}")
    if mode == "auto":
        return "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall", "f1")) else "min"
    return mode
