"""Whole-model files: model.save -> xpnet.models.load_model, and ModelCheckpoint."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import ModelCheckpoint
from xpnet.file_checks import FileFormatError
from xpnet.layers import Conv2D, Flatten, MaxPooling2D
from xpnet.models import load_model


def _data(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8)).astype(np.float32), rng.integers(0, 3, n)


def _model(backend: str = "numpy", optimizer: Any = "adam") -> xpnet.Sequential:
    model = xpnet.Sequential(
        [
            xpnet.Dense(16, "elu", input_shape=(8,), kernel_regularizer=xpnet.regularizers.L2(0.01)),
            xpnet.Dropout(0.3),
            xpnet.Dense(8, xpnet.activations.LeakyReLU(0.1)),
            xpnet.Activation("tanh"),
            xpnet.Dense(3, "softmax"),
        ],
        seed=3,
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_a_loaded_model_continues_training_bit_for_bit(backend: str, optimizer: str, tmp_path: Path) -> None:
    x, y = _data()
    model = _model(backend, optimizer)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", backend=backend)
    assert loaded.metrics_names == ["loss", "accuracy"] and type(loaded.optimizer) is type(model.optimizer)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # same shuffles, masks and optimizer state
    loaded.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_saved_on_one_backend_loads_on_another(tmp_path: Path) -> None:
    pytest.importorskip("array_api_strict")
    x, _ = _data()
    model = _model("strict")
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz", backend="numpy")
    assert loaded.ops is not None and loaded.ops.name == "numpy"
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


def test_a_conv_model_round_trip_and_compile_false(tmp_path: Path) -> None:
    conv = Conv2D(2, 3, padding="same", activation="relu", input_shape=(6, 6, 1))
    model = xpnet.Sequential([conv, MaxPooling2D(), Flatten(), xpnet.Dense(2, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.save(tmp_path / "c.keras")
    loaded = load_model(tmp_path / "c.keras", compile=False)
    assert loaded.optimizer is None and [type(layer).__name__ for layer in loaded.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    x = np.random.default_rng(1).random((5, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_custom_layers_need_custom_objects(tmp_path: Path) -> None:
    class Twice(xpnet.layers.Layer):
        def forward(self, x: Any, training: bool = False) -> Any:
            return x * 2.0

        def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
            return dy * 2.0

    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,)), Twice()], seed=0)
    model.save(tmp_path / "t.keras")
    with pytest.raises(ValueError, match=r"unknown Layer class 'Twice'.*custom_objects"):
        load_model(tmp_path / "t.keras")
    loaded = load_model(tmp_path / "t.keras", custom_objects={"Twice": Twice})
    np.testing.assert_array_equal(loaded.predict(np.ones((1, 3))), model.predict(np.ones((1, 3))))


def test_bad_model_files_give_clear_errors(tmp_path: Path) -> None:
    model = _model()
    good = tmp_path / "m.keras"
    model.save(good)
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(FileFormatError, match=r"^xpnet: .*cut.keras is not a valid xpnet model file: a damaged"):
        load_model(truncated)
    pickled = tmp_path / "p.keras"
    np.savez(pickled.open("wb"), header=np.array([{"format": "xpnet-model"}], dtype=object))
    with pytest.raises(FileFormatError, match=r"p.keras is not a valid xpnet model file: .*dtype object"):
        load_model(pickled)
    raw = tmp_path / "raw.keras"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(FileFormatError, match=r"raw\.keras is not a valid xpnet model file: not an \.npz archive"):
        load_model(raw)
    weights = tmp_path / "w.npz"
    model.save_weights(weights)
    with pytest.raises(ValueError, match="load with load_weights"):
        load_model(weights)
    with pytest.raises(ValueError, match=r"writes a \.keras"):
        model.save(tmp_path / "m.pkl")  # ".h5" is Keras's legacy format: tests/test_h5_model.py
    assert zipfile.is_zipfile(good) and not list(tmp_path.glob(".*tmp"))  # atomic: no temp files left


def test_model_checkpoint_saves_every_epoch_and_formats_the_name(tmp_path: Path) -> None:
    x, y = _data()
    cb = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.keras")
    _model().fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[cb])
    names = sorted(p.name for p in tmp_path.glob("m-*.keras"))
    assert [n[:5] for n in names] == ["m-01-", "m-02-", "m-03-"]
    load_model(tmp_path / names[-1])


def test_model_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path: Path) -> None:
    model = _model()
    cb = ModelCheckpoint(tmp_path / "best.weights.npz", monitor="val_loss", save_best_only=True, save_weights_only=True)
    cb.set_model(model)
    written = []
    for epoch, loss in enumerate([0.9, 0.8, 0.85, 0.8, 0.7]):  # Keras: strictly better only
        before = (tmp_path / "best.weights.npz").stat().st_mtime_ns if (tmp_path / "best.weights.npz").exists() else 0
        model.layers[0].set_weights([np.full((8, 16), float(epoch), np.float32), np.zeros(16, np.float32)])
        cb.on_epoch_end(epoch, {"val_loss": loss})
        after = (tmp_path / "best.weights.npz").stat().st_mtime_ns
        written.append(after != before)
    assert cb.best == 0.7
    other = _model()
    other.load_weights(tmp_path / "best.weights.npz")
    assert other.layers[0].get_weights()[0][0, 0] == 4.0  # the last improvement's weights
    assert written[:2] == [True, True] and written[4]
    with pytest.raises(ValueError, match=r"must end in \.keras"):
        ModelCheckpoint(tmp_path / "m.npz")


def test_model_checkpoint_writes_a_legacy_h5_model_file_as_keras_does(tmp_path: Path) -> None:
    # Keras takes ".keras" or the legacy ".h5" for whole models, and model.save writes .h5 now
    pytest.importorskip("h5py")
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "ck" / "m-{epoch}.h5")])
    loaded = xpnet.models.load_model(tmp_path / "ck" / "m-2.h5")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


def test_model_checkpoint_every_n_steps(tmp_path: Path) -> None:
    x, y = _data()
    cb = ModelCheckpoint(tmp_path / "s.weights.npz", save_weights_only=True, save_freq=4)
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])  # 8 steps: written at 4 and 8
    other = _model()
    other.load_weights(tmp_path / "s.weights.npz")
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
