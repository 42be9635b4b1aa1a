"""A model runs one fit/evaluate/train_on_batch at a time: a second thread gets a clear error, not mixed state."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import Callback, LambdaCallback
from xpnet.layers import Conv2D, Dense, Flatten, MaxPooling2D
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
        # predict is refused too: it overwrites the layers' state the running step needs (see below)
        with pytest.raises(ModelBusyError, match=r"^predict: this model is running fit\(\) in another thread"):
            model.predict(x[:5])
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


def test_predict_beside_fit_is_refused_not_left_to_break_the_running_step() -> None:
    """predict in another thread while fit runs used to null a Conv2D's and a MaxPooling2D's saved forward
    state between the step's forward and backward (fit then died in backward, "'NoneType' object has no
    attribute 'shape'"), and to replace Dense pre-activations that backward reads."""
    model = xpnet.Sequential(
        [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(), Flatten(), Dense(3)], seed=0
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 64)
    reference = copy.deepcopy(model)
    expected = reference.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False).history["loss"]
    inside, done, refused = threading.Event(), threading.Event(), []

    def predict_during_the_step() -> None:
        assert inside.wait(30)
        try:
            model.predict(x[:16], batch_size=16)
        except ModelBusyError as e:
            refused.append(str(e))
        done.set()

    layer = model.layers[2]  # pause fit between its forward and its backward, where predict would hurt
    backward = layer.backward

    def paused_backward(*args: object, **kwargs: object) -> object:
        if not inside.is_set():
            inside.set()
            assert done.wait(30)
        return backward(*args, **kwargs)

    layer.backward = paused_backward  # type: ignore[method-assign]
    t = threading.Thread(target=predict_during_the_step)
    t.start()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    t.join(30)
    assert len(refused) == 1 and refused[0].startswith("predict: this model is running fit() in another thread")
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-6)
    assert model.predict(x[:4]).shape == (4, 3)  # free again after fit


def test_training_is_refused_while_another_thread_predicts_and_predicts_may_run_together() -> None:
    model, (x, y) = _model(), _data()
    model.fit(x, y, epochs=1, verbose=0)
    inside, release = threading.Event(), threading.Event()
    first = model.layers[0]
    forward = first.forward

    def paused_forward(*args: object, **kwargs: object) -> object:
        if threading.current_thread().name == "predictor":
            inside.set()
            assert release.wait(30)
        return forward(*args, **kwargs)

    first.forward = paused_forward  # type: ignore[method-assign]
    t = threading.Thread(target=lambda: model.predict(x), name="predictor")
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(ModelBusyError, match=r"^fit: this model is running predict\(\) in another thread"):
            model.fit(x, y, epochs=1, verbose=0)
        assert model.predict(x[:3]).shape == (3, 3)  # another predict beside it is fine
    finally:
        release.set()
        t.join(30)
    assert len(model.fit(x, y, epochs=1, verbose=0).epoch) == 1
