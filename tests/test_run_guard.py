"""A model runs one fit/evaluate/train_on_batch at a time: a second thread gets a clear error, not mixed state."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import Callback, LambdaCallback
from xpnet.layers import Dense
from xpnet.training.guard import ModelBusyError


def _model() -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)


class _Paused(Callback):
    """Holds fit inside its first epoch until the other thread has tried its call."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if epoch == 0:
            self.inside.set()
            assert self.release.wait(30)


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch"])
def test_a_second_thread_is_refused_while_fit_runs(call: str) -> None:
    model, (x, y) = _model(), _data()
    paused, result = _Paused(), {}

    def train() -> None:
        result["history"] = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[paused])

    t = threading.Thread(target=train)
    t.start()
    try:
        assert paused.inside.wait(30)
        args = {"fit": dict(epochs=1, verbose=0), "evaluate": dict(verbose=0), "train_on_batch": {}}[call]
        with pytest.raises(ModelBusyError, match=rf"^{call}: this model is running fit\(\) in another thread"):
            getattr(model, call)(x, y, **args)
        # predict stays available while fit runs
        assert model.predict(x[:5]).shape == (5, 3)
    finally:
        paused.release.set()
        t.join(60)
    # the refused call left the running fit whole: 3 epochs, the same losses as an undisturbed run
    reference = _model().fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert result["history"].epoch == [0, 1, 2]
    np.testing.assert_allclose(result["history"].history["loss"], reference.history["loss"], rtol=1e-6)


def test_the_guard_is_released_after_an_error_and_reentrant_in_one_thread() -> None:
    model, (x, y) = _model(), _data()
    with pytest.raises(ValueError):
        model.fit(x, y, epochs=-1, verbose=0)
    seen = []
    # a callback evaluating the model from inside fit runs in the same thread: allowed
    inner = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.evaluate(x, y, verbose=0)))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[inner])
    assert len(seen) == 1 and np.isfinite(seen[0][0])
    done = []
    t = threading.Thread(target=lambda: done.append(model.train_on_batch(x, y)))
    t.start()
    t.join(30)
    assert len(done) == 1


def test_a_copy_of_a_busy_model_can_train() -> None:
    model, (x, y) = _model(), _data()
    model.fit(x, y, epochs=1, verbose=0)
    twin = copy.deepcopy(model)
    paused = _Paused()
    t = threading.Thread(target=lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[paused]))
    t.start()
    try:
        assert paused.inside.wait(30)
        assert len(twin.fit(x, y, epochs=1, verbose=0).epoch) == 1
    finally:
        paused.release.set()
        t.join(60)
