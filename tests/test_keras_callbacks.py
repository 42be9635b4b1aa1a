"""Keras's callbacks as Keras documents them."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import CSVLogger, LambdaCallback, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN


def _data(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _model(lr: float = 0.1) -> xpnet.Sequential:
    model = xpnet.Sequential([xpnet.Dense(6, "relu", input_shape=(5,)), xpnet.Dense(3, "softmax")], seed=0)
    model.compile(xpnet.optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_logs_it() -> None:
    x, y = _data()
    model = _model()
    seen: list[float] = []
    spy = LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(model.optimizer.learning_rate))
    sched = LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    hist = model.fit(x, y, epochs=4, verbose=0, callbacks=[sched, spy])
    assert seen == [0.1, 0.1, 0.05, 0.025]
    assert hist.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025]
    one_arg = LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[one_arg])
    with pytest.raises(ValueError, match="must be > 0"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: 0.0)])


def test_a_new_rate_moves_the_weights_as_a_fresh_optimizer_with_that_rate() -> None:
    x, y = _data()
    a, b = _model(0.1), _model(0.1)
    a.fit(x, y, epochs=1, verbose=0, shuffle=False, callbacks=[LearningRateScheduler(lambda e, lr: 0.02)])
    b.compile(xpnet.optimizers.SGD(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    b.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def _plateau(values: list[float], **kw: Any) -> list[float]:
    """Feed ReduceLROnPlateau a sequence of val_loss values; return the rate after each epoch."""
    model = _model(1.0)
    cb = ReduceLROnPlateau(**kw)
    cb.set_model(model)
    cb.on_train_begin()
    rates = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"val_loss": v})
        rates.append(model.optimizer.learning_rate)
    return rates


def test_reduce_lr_on_plateau_patience_cooldown_and_min_lr_as_keras() -> None:
    # Keras's rule: after `patience` epochs without an improvement by min_delta, lr *= factor;
    # then `cooldown` epochs during which the wait stays 0
    flat = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert _plateau(flat, factor=0.5, patience=2) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert _plateau(flat, factor=0.5, patience=2, cooldown=2) == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert _plateau(flat, factor=0.1, patience=1, min_lr=0.05) == [1.0, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05]
    # improvements smaller than min_delta do not count
    assert _plateau([1.0, 0.99995, 0.9999], factor=0.5, patience=2) == [1.0, 1.0, 0.5]
    assert _plateau([1.0, 0.9, 0.8, 0.7], factor=0.5, patience=1) == [1.0, 1.0, 1.0, 1.0]
    up = ReduceLROnPlateau(monitor="val_accuracy")
    assert up.mode == "max"


def test_csv_logger_writes_keras_columns_and_appends(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "log.csv"
    _model().fit(x, y, epochs=2, verbose=0, validation_split=0.25, callbacks=[CSVLogger(path)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"] and all(math.isfinite(float(v)) for v in rows[2][1:])
    _model().fit(x, y, epochs=1, verbose=0, validation_split=0.25, callbacks=[CSVLogger(path, append=True)])
    assert len(list(csv.reader(path.open()))) == 4  # no second header


def test_terminate_on_nan_stops_at_the_first_bad_batch(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((320, 5)).astype(np.float32) * 100, rng.random((320, 3)).astype(np.float32)
    model = xpnet.Sequential([xpnet.Dense(6, "relu", input_shape=(5,)), xpnet.Dense(3)], seed=0)
    model.compile(xpnet.optimizers.SGD(10.0), "mse", backend="numpy")  # diverges: inf within 3 epochs
    steps: list[int] = []
    spy = LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    with pytest.warns(RuntimeWarning, match="not finite"):
        hist = model.fit(x, y, epochs=5, verbose=0, callbacks=[TerminateOnNaN(), spy])
    out = capsys.readouterr().out
    assert "Invalid loss, terminating training" in out
    bad = int(out.split("Batch ")[1].split(":")[0])
    assert len(hist.history["loss"]) < 5 and steps[-1] == bad  # no step after the bad one


def test_lambda_callback_hooks_and_unknown_names() -> None:
    x, y = _data()
    calls: list[str] = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_end=lambda epoch, logs: calls.append(f"epoch_end {epoch} {sorted(logs)}"),
        on_train_batch_begin=lambda batch, logs: calls.append("batch"),
        on_train_end=lambda logs: calls.append("train_end"),
    )
    _model().fit(x, y, batch_size=48, epochs=1, verbose=0, callbacks=[cb])
    assert calls == ["train_begin", "batch", "batch", "epoch_end 0 ['accuracy', 'loss']", "train_end"]
    with pytest.raises(ValueError, match="unknown hook"):
        LambdaCallback(on_epoch_ending=print)
