"""fit / evaluate / predict on a `PyDataset` and on generators of batches, written from Keras's
`keras.utils.PyDataset` documentation: a dataset class that slices arrays batch by batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.utils import PyDataset


class SlicedDataset(PyDataset):
    """As in Keras's docs: batches sliced from arrays (a real one would read files here)."""

    def __init__(self, x_set: np.ndarray, y_set: np.ndarray, batch_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x_set, y_set, batch_size
        self.epochs_ended = 0

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        low = idx * self.batch_size
        high = min(low + self.batch_size, len(self.x))
        return self.x[low:high], self.y[low:high]

    def on_epoch_end(self) -> None:
        self.epochs_ended += 1


def _data(n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.random((n, 6)).astype(np.float32), rng.integers(0, 4, n)


def _model(backend: str = "numpy") -> xpnet.Sequential:
    model = xpnet.Sequential([xpnet.Dense(10, "relu"), xpnet.Dense(4, "softmax")], seed=7)
    model.compile(xpnet.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    return model


def test_fit_on_a_pydataset_matches_fit_on_the_same_arrays_unshuffled(backend: str) -> None:
    x, y = _data()
    ds = SlicedDataset(x, y, batch_size=16, workers=2)
    streamed = _model(backend)
    hist = streamed.fit(ds, epochs=3, verbose=0)
    plain = _model(backend)
    ref = plain.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert ds.epochs_ended == 3
    np.testing.assert_allclose(hist.history["loss"], ref.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(hist.history["accuracy"], ref.history["accuracy"])
    for a, b in zip(streamed.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert streamed.evaluate(ds, verbose=0) == pytest.approx(plain.evaluate(x, y, verbose=0), rel=1e-5)
    np.testing.assert_allclose(streamed.predict(ds), plain.predict(x), rtol=1e-5, atol=1e-7)


def test_fit_on_a_pydataset_with_pydataset_validation() -> None:
    x, y = _data()
    hist = _model().fit(
        SlicedDataset(x[:60], y[:60], 20), validation_data=SlicedDataset(x[60:], y[60:], 7), epochs=2, verbose=0
    )
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(hist.history["val_loss"]) == 2


def test_fit_on_a_repeating_generator_with_steps_per_epoch() -> None:
    x, y = _data()

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            for lo in range(0, 90, 30):
                yield x[lo : lo + 30], y[lo : lo + 30]

    streamed = _model()
    hist = streamed.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
    ref = _model().fit(x, y, batch_size=30, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hist.history["loss"], ref.history["loss"], rtol=1e-5)
    assert streamed.evaluate(x, y, batch_size=30, steps=1, verbose=0) == pytest.approx(
        streamed.evaluate(x[:30], y[:30], verbose=0), rel=1e-6
    )
    assert streamed.evaluate(batches(), steps=3, verbose=0)[0] == pytest.approx(
        streamed.evaluate(x, y, verbose=0)[0], rel=1e-5
    )


def test_a_finite_generator_trains_one_epoch_then_warns_that_it_ran_out() -> None:
    x, y = _data()
    gen = ((x[lo : lo + 30], y[lo : lo + 30]) for lo in range(0, 90, 30))
    with pytest.warns(RuntimeWarning, match="ran out"):
        hist = _model().fit(gen, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 1


def test_a_finite_validation_generator_validates_once_then_training_goes_on_with_a_warning() -> None:
    # Keras warns that the validation input ran out and keeps training; a crash in epoch 2
    # ("the data yielded no batches", though it did in epoch 1) threw the run away.
    x, y = _data()
    val = ((x[lo : lo + 30], y[lo : lo + 30]) for lo in range(0, 90, 30))
    with pytest.warns(RuntimeWarning, match="validation_data ran out"):
        hist = _model().fit(x, y, batch_size=30, epochs=3, validation_data=val, verbose=0)
    assert len(hist.history["loss"]) == 3
    assert len(hist.history["val_loss"]) == 1
    with pytest.raises(ValueError, match="yielded no batches"):  # empty from the start: still an error
        _model().fit(x, y, batch_size=30, epochs=1, validation_data=iter([]), verbose=0)


def test_generator_batches_with_sample_weights_match_weighted_arrays() -> None:
    x, y = _data()
    w = np.linspace(0.5, 1.5, 90).astype(np.float32)
    gen = ((x[lo : lo + 45], y[lo : lo + 45], w[lo : lo + 45]) for lo in (0, 45))
    hist = _model().fit(gen, epochs=1, verbose=0)
    ref = _model().fit(x, y, sample_weight=w, batch_size=45, shuffle=False, epochs=1, verbose=0)
    assert hist.history["loss"] == pytest.approx(ref.history["loss"], rel=1e-5)


def test_predict_on_a_generator_of_inputs_only() -> None:
    x, _ = _data()
    model = _model()
    model.build((None, 6))
    out = model.predict(x[lo : lo + 40] for lo in range(0, 90, 40))
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-6)


def test_stream_misuse_says_what_to_do() -> None:
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="y must be None"):
        model.fit(SlicedDataset(x, y, 10), y, verbose=0)
    with pytest.raises(ValueError, match="validation_split cannot split"):
        model.fit(SlicedDataset(x, y, 10), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="must hold targets"):
        model.fit(SlicedDataset(x, y, 10).x[i : i + 10] for i in range(0, 90, 10))
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        SlicedDataset(x, y, 10, workers=0)

    class NoLen(PyDataset):
        def __getitem__(self, idx: int) -> Any:
            return x[:10], y[:10]

    with pytest.raises(ValueError, match="no __len__"):
        model.fit(NoLen(), verbose=0)
    assert model.fit(NoLen(), steps_per_epoch=2, verbose=0).history["loss"]
    assert "batches=9" in repr(SlicedDataset(x, y, 10))


def test_the_epoch_line_of_a_generator_without_steps_counts_the_batches_it_ran(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the step count is unknown ahead; the line printed "0/0" and the epoch's whole time as per-step
    x, y = _data()
    _model().fit(((x[lo : lo + 30], y[lo : lo + 30]) for lo in range(0, 90, 30)), epochs=1, verbose=2)
    assert " - 3/3 - " in capsys.readouterr().out


def test_steps_per_epoch_with_arrays_runs_that_many_batches_on_through_the_data() -> None:
    # Keras: each epoch is steps_per_epoch batches, continuing where the last epoch stopped and
    # starting over when the data is used up; the argument was ignored for arrays (whole epochs)
    x, y = _data()
    batches: list[int] = []
    count = xpnet.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    arrays = _model().fit(x, y, batch_size=20, epochs=4, steps_per_epoch=2, shuffle=False, verbose=0, callbacks=[count])
    assert batches == [0, 1] * 4

    def cycling() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            for lo in range(0, 90, 20):
                yield x[lo : lo + 20], y[lo : lo + 20]

    ref = _model().fit(cycling(), epochs=4, steps_per_epoch=2, verbose=0)
    np.testing.assert_allclose(arrays.history["loss"], ref.history["loss"], rtol=1e-6)
