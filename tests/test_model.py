"""Sequential's Keras workflow: fit / evaluate / predict / History / weights / callbacks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, EarlyStopping, Sequential
from xpnet.callbacks import Callback, Progress


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian clusters in 4-D: (n, 4) float32, labels (n,) int."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], dtype=np.float32)
    return (centers[y] + 0.5 * rng.standard_normal((n, 4))).astype(np.float32), y


def classifier(seed: int = 0, dropout: float = 0.0, dtype: str = "float32") -> Sequential:
    layers = [Dense(16, "relu", input_shape=(4,))]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(3, "softmax"))
    return Sequential(layers, seed=seed, dtype=dtype)


def test_fit_returns_history_with_keras_keys(backend: str) -> None:
    x, y = blobs()
    model = classifier()
    model.compile(xpnet.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    hist = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 5 for v in hist.history.values())
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["val_accuracy"][-1] > 0.9
    assert model.history is hist


def test_evaluate_matches_a_numpy_reference(backend: str) -> None:
    x, y = blobs(100)
    model = classifier(dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    loss, acc = model.evaluate(x, y, batch_size=7, verbose=0)
    p = model.predict(x)
    assert loss == pytest.approx(float(np.mean(-np.log(p[np.arange(100), y]))), rel=1e-10)
    assert acc == pytest.approx(float(np.mean(p.argmax(1) == y)))
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert d == {"loss": pytest.approx(loss), "accuracy": pytest.approx(acc)}


def test_predict_returns_host_numpy(backend: str) -> None:
    x, _ = blobs(50)
    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", backend=backend)
    p = model.predict(x, batch_size=16)
    assert isinstance(p, np.ndarray) and p.shape == (50, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_metrics_resolve_like_keras() -> None:
    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = Sequential([Dense(1, "sigmoid", input_shape=(4,))])
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy", "mse", "mae"])
    res = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x)
    assert type(model.metrics[0]).__name__ == "BinaryAccuracy"
    assert res["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))
    assert res["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert res["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)


def test_regression_with_mape_and_custom_metric() -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(-1, 1)
    y = 3 * x + 5

    def max_error(y_true, y_pred):
        return abs(y_pred - y_true)[:, 0]

    model = Sequential([Dense(1, input_shape=(1,))], seed=0)
    model.compile(xpnet.optimizers.SGD(0.1), "mse", metrics=["mape", max_error])
    hist = model.fit(x, y, batch_size=8, epochs=100, verbose=0)
    kernel, bias = model.layers[0].get_weights()
    assert kernel[0, 0] == pytest.approx(3.0, abs=1e-3) and bias[0] == pytest.approx(5.0, abs=1e-3)
    assert hist.history["mape"][-1] < 0.1 and hist.history["max_error"][-1] < 1e-2


def test_custom_loss_subclass_trains() -> None:
    class Quartic(xpnet.losses.Loss):
        name = "quartic"

        def call(self, xp, y_true, y_pred):
            return xp.mean((y_pred - y_true) ** 4, axis=-1)

        def grad(self, xp, y_true, y_pred):
            return 4 * (y_pred - y_true) ** 3 / y_pred.shape[-1]

    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(-1, 1)
    model = Sequential([Dense(1, input_shape=(1,))], seed=0)
    model.compile(xpnet.optimizers.SGD(0.3), Quartic())
    hist = model.fit(x, 2 * x - 1, batch_size=32, epochs=300, verbose=0)
    assert hist.history["loss"][-1] < 1e-4 < hist.history["loss"][0]


def test_regularization_penalty_is_added_to_the_reported_loss() -> None:
    x, y = blobs(60)
    plain = classifier(seed=4)
    reg = Sequential(
        [Dense(16, "relu", input_shape=(4,), kernel_regularizer=xpnet.regularizers.L2(0.1)), Dense(3, "softmax")],
        seed=4,
    )
    for m in (plain, reg):
        m.compile("sgd", "sparse_categorical_crossentropy")
    w = plain.layers[0].get_weights()[0]
    expected = plain.evaluate(x, y, verbose=0) + 0.1 * float(np.sum(w.astype(np.float64) ** 2))
    assert reg.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_params_grads_and_optimizer_state_stay_float32(backend: str) -> None:
    x, y = blobs(64)
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    model.fit(x.astype(np.float64), y, epochs=1, verbose=0)
    ops = model.ops
    assert ops.to_numpy(model.store.params).dtype == np.float32
    assert ops.to_numpy(model.store.grads).dtype == np.float32
    assert {ops.to_numpy(s).dtype for s in model.optimizer.slots.values()} == {np.dtype(np.float32)}
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_float64_models_compute_in_float64() -> None:
    x, y = blobs(64)
    model = classifier(dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x).dtype == np.float64 and model.get_weights()[0].dtype == np.float64


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    x, y = blobs(200)

    def train(seed: int) -> list[np.ndarray]:
        model = classifier(seed=seed, dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy", backend="numpy")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        return model.get_weights()

    a, b, c = train(11), train(11), train(12)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c, strict=True))


def test_set_random_seed_makes_unseeded_models_repeatable() -> None:
    xpnet.set_random_seed(5)
    a = Sequential([Dense(3, input_shape=(2,))]).get_weights()
    xpnet.set_random_seed(5)
    b = Sequential([Dense(3, input_shape=(2,))]).get_weights()
    np.testing.assert_array_equal(a[0], b[0])


def test_dropout_is_inverted_and_only_active_in_training(rng: np.random.Generator) -> None:
    model = Sequential([Dropout(0.25, input_shape=(1000,))], seed=0)
    x = np.ones((20, 1000), np.float32)
    np.testing.assert_array_equal(model.predict(x), x)
    layer = model.layers[0]
    out = model.ops.to_numpy(layer.forward(model.ops.asarray(x), training=True))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert np.mean(out == 0) == pytest.approx(0.25, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.02)


def test_save_and_load_weights_round_trip(tmp_path: Path, backend: str) -> None:
    x, y = blobs(80)
    a = classifier(seed=1)
    a.compile("adam", "sparse_categorical_crossentropy", backend=backend)
    a.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.weights.npz"
    a.save_weights(path)
    b = classifier(seed=2)
    b.compile("adam", "sparse_categorical_crossentropy", backend="numpy")
    b.load_weights(path)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)  # bit-exact across backends
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=1e-5, atol=1e-6)


def test_load_weights_of_another_architecture_leaves_model_unchanged(tmp_path: Path) -> None:
    small = Sequential([Dense(5, "relu", input_shape=(4,)), Dense(3, "softmax")])
    small.save_weights(tmp_path / "small.npz")
    model = classifier()
    before = model.get_weights()
    with pytest.raises(
        ValueError, match=r"(?s)different architecture.*Dense\[\[4, 5\], \[5\]\].*Dense\[\[4, 16\], \[16\]\]"
    ):
        model.load_weights(tmp_path / "small.npz")
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_missing_and_corrupt_weight_files(tmp_path: Path) -> None:
    model = classifier()
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        model.load_weights(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match=r"^xpnet: .*bad.npz is not a valid xpnet weights file: a damaged"):
        model.load_weights(tmp_path / "bad.npz")
    model.save_weights(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.npz is not a valid xpnet weights file: a damaged"):
        model.load_weights(tmp_path / "cut.npz")


def test_save_weights_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = classifier()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    good = path.read_bytes()

    def crash(f, **entries):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["w.npz"]


def test_early_stopping_restores_best_weights() -> None:
    x, y = blobs(120)
    model = classifier()
    model.compile(xpnet.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    stopper = EarlyStopping(monitor="loss", patience=2, min_delta=10.0, restore_best_weights=True)
    seen: list[list[np.ndarray]] = []

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(model.get_weights())

    hist = model.fit(x, y, epochs=20, verbose=0, callbacks=[Snapshot(), stopper])
    # no epoch beats the first by 10, so, as in Keras, it stops after `patience` more epochs
    assert len(hist.epoch) == 3 and stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    for a, b in zip(model.get_weights(), seen[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[0][0], seen[2][0])


def test_callbacks_see_epochs_and_batches() -> None:
    x, y = blobs(100)
    seen: list[tuple[str, int]] = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", epoch))
            assert "loss" in logs

        def on_train_batch_end(self, batch, logs=None):
            seen.append(("batch", batch))

    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=50, epochs=2, verbose=0, callbacks=[Spy()])
    assert seen == [("batch", 0), ("batch", 1), ("epoch", 0), ("batch", 0), ("batch", 1), ("epoch", 1)]


def test_training_stops_with_a_message_when_loss_is_not_finite() -> None:
    x, y = blobs(100)
    model = classifier()
    model.compile(xpnet.optimizers.SGD(1e30), "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="not finite.*training stopped"):
        hist = model.fit(x * 1e3, y, epochs=10, verbose=0)
    assert len(hist.epoch) < 10


def test_one_clean_line_per_epoch_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs(100)
    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=10, epochs=2, validation_split=0.1, verbose="auto")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - 9/9 - ")
    for key in ("ms/step", "loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "):
        assert key in lines[1]


def test_progress_bar_on_a_terminal_shows_epoch_steps_and_metrics() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress(1, epochs=30, steps=1719, stream=stream)
    bar.epoch_begin(2)
    bar.update(100, {"loss": 0.5, "accuracy": 0.8})
    bar.epoch_end(2, {"loss": 0.44, "accuracy": 0.85, "val_loss": 0.42, "val_accuracy": 0.86})
    text = stream.getvalue()
    for key in ("Epoch 3/30", "1719/1719", "/step", "loss: 0.4400", "val_accuracy: 0.8600"):
        assert key in text
    assert Progress(0, 1, 1, stream=stream).mode == 0


def test_verbose_zero_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs(50)
    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""


def test_keras_workflow_with_add_and_input() -> None:
    model = Sequential(name="mlp")
    model.add(xpnet.Input(shape=(4,)))
    model.add(Dense(8, activation="tanh"))
    model.add(Dense(3, activation="softmax"))
    assert model.input_shape == (None, 4) and model.output_shape == (None, 3)
    assert [layer.name for layer in model.layers] == ["dense", "dense_1"]
    assert model.count_params() == 4 * 8 + 8 + 8 * 3 + 3
    w = model.get_weights()
    model.set_weights([np.zeros_like(a) for a in w])
    assert all(np.all(a == 0) for a in model.get_weights())
    assert "mlp" in repr(model)


def test_unbuilt_model_builds_on_first_fit() -> None:
    x, y = blobs(40)
    model = Sequential([Dense(8, "relu"), Dense(3, "softmax")], seed=0)
    lines: list[str] = []
    model.summary(print_fn=lines.append)  # Keras 3 prints an unbuilt model too: "?" shapes, no weights yet
    assert any("dense (Dense)" in line and "│ ?" in line and "0 (unbuilt)" in line for line in lines)
    assert " Total params: 0 (0.00 B)" in lines
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    assert model.input_shape == (None, 4) and model.count_params() == 4 * 8 + 8 + 27


def test_saved_weights_get_the_usual_file_permissions(tmp_path: Path) -> None:
    classifier().save_weights(tmp_path / "w.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_streaming_fallback_gives_the_same_run_as_device_resident_data(backend: str) -> None:
    """When the data does not fit the device budget, batches are uploaded one by one: same numbers."""
    x, y = blobs(200)
    results = []
    for limit in (None, 0):
        model = classifier(seed=8, dropout=0.2)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
        model.ops.max_resident_bytes = limit
        try:
            hist = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0)
        finally:
            model.ops.max_resident_bytes = None
        results.append((model.get_weights(), hist.history))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]


def test_repeated_fit_calls_draw_new_shuffles_and_match_one_longer_fit() -> None:
    x, y = blobs(96)
    once, twice = classifier(seed=6), classifier(seed=6)
    for m in (once, twice):
        m.compile("sgd", "sparse_categorical_crossentropy")
    once.fit(x, y, batch_size=8, epochs=2, verbose=0)
    twice.fit(x, y, batch_size=8, epochs=1, verbose=0)
    twice.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(once.get_weights(), twice.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_metrics_of_a_from_logits_model_see_its_logits(backend: str) -> None:
    x, y = blobs(60)
    model = Sequential([Dense(3, input_shape=(4,))], seed=2)
    model.compile("sgd", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["mse"], backend=backend)
    got = model.evaluate(x, y, verbose=0, return_dict=True)["mse"]
    logits = model.predict(x)
    assert got == pytest.approx(float(np.mean((logits - np.eye(3)[y]) ** 2)), rel=1e-5)


def test_early_stopping_after_a_non_finite_loss_stops_cleanly() -> None:
    x, y = blobs(100)
    model = classifier()
    model.compile(xpnet.optimizers.SGD(1e30), "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="not finite"):
        hist = model.fit(x * 1e3, y, epochs=5, verbose=0, validation_split=0.2, callbacks=[EarlyStopping()])
    assert len(hist.epoch) == 1


def test_compute_gradients_leaves_dropout_counters_alone() -> None:
    x, y = blobs(40)
    model = classifier(dropout=0.5)
    model.compile("sgd", "sparse_categorical_crossentropy")
    a, b = model.compute_gradients(x, y), model.compute_gradients(x, y)
    assert a[0] == b[0]
    for u, v in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(u, v)
