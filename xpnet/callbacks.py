"""Callbacks: the History every `fit` returns, EarlyStopping, and the progress display."""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .training.trainer import Trainer


class Callback:
    """Base class. Hooks receive `logs`: a dict of Python floats (epoch hooks only).

    Batch hooks get `logs=None`: reading the loss every step would force a device sync.
    """

    def __init__(self) -> None:
        self.model: Trainer | None = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Trainer) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: None = None) -> None: ...


class History(Callback):
    """`history.history` maps each logged name to its per-epoch list; `history.epoch` lists epoch indices."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

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
        self.monitor, self.mode = monitor, mode
        self.min_delta, self.patience, self.verbose = abs(float(min_delta)), int(patience), verbose
        self.baseline, self.restore_best_weights, self.start_from_epoch = (
            baseline,
            restore_best_weights,
            start_from_epoch,
        )
        self.stopped_epoch = 0

    def _improved(self, value: float, ref: float) -> bool:
        return value < ref - self.min_delta if self.mode == "min" else value > ref + self.min_delta

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
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

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
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

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        assert self.model is not None
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


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
