"""Legacy full-model .h5 files (Keras 2's layout): xpnet's own round trip, a file laid out as Keras 2
writes it, and reads bounded by the shapes the model expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import h5_model
from xpnet.file_checks import FileFormatError

h5py = pytest.importorskip("h5py")


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((40, 3)).astype(np.float32), rng.integers(0, 2, 40)


def test_sequential_h5_round_trip_continues_training_exactly(tmp_path: Path) -> None:
    x, y = _data()
    model = xpnet.Sequential(
        [xpnet.Dense(4, "relu", input_shape=(3,)), xpnet.Dropout(0.2), xpnet.Dense(2, "softmax")], seed=1
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "model.h5")
    loaded = xpnet.models.load_model(tmp_path / "model.h5")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.fit(x, y, epochs=2, verbose=0).history == model.fit(x, y, epochs=2, verbose=0).history
    with h5py.File(tmp_path / "model.h5", "r") as f:
        assert json.loads(f.attrs["model_config"])["class_name"] == "Sequential"
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["model_weights/dense"].attrs["weight_names"]]
        assert names == ["dense/kernel:0", "dense/bias:0"]
        assert f["model_weights/dense/dense/kernel:0"].shape == (3, 4)
    bare = xpnet.models.load_model(tmp_path / "model.h5", compile=False)
    assert bare.optimizer is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]  # atomic: no temporary left


def test_functional_h5_round_trip(tmp_path: Path) -> None:
    inp = xpnet.Input((3,))
    out = xpnet.Dense(2, "softmax")(xpnet.Dense(5, "tanh")(inp))
    model = xpnet.Model(inp, out)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.save(tmp_path / "f.hdf5")
    loaded = xpnet.models.load_model(tmp_path / "f.hdf5")
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def _keras2_file(path: Path, kernel: np.ndarray, bias: np.ndarray) -> None:
    """A file as Keras 2 lays it out (hdf5_format.save_model_to_hdf5), written by hand."""
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "in"},
                },
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense_7",
                        "trainable": True,
                        "dtype": "float32",
                        "units": 2,
                        "activation": "softmax",
                        "use_bias": True,
                        "kernel_regularizer": None,
                        "bias_regularizer": None,
                        "activity_regularizer": None,
                        "kernel_constraint": None,
                        "bias_constraint": None,
                    },
                },
            ],
        },
    }
    training = {
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.005, "decay": 0.0}},
    }
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["training_config"] = json.dumps(training)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"in", b"dense_7"]
        g.create_group("in").attrs["weight_names"] = []
        d = g.create_group("dense_7")
        d.attrs["weight_names"] = [b"dense_7/kernel:0", b"dense_7/bias:0"]
        d.create_dataset("dense_7/kernel:0", data=kernel)
        d.create_dataset("dense_7/bias:0", data=bias)


def test_a_file_in_keras_2s_layout_loads_with_its_compile_settings(tmp_path: Path) -> None:
    kernel = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    bias = np.array([0.5, -0.5], np.float32)
    _keras2_file(tmp_path / "k.h5", kernel, bias)
    model = xpnet.models.load_model(tmp_path / "k.h5")
    np.testing.assert_array_equal(model.get_weights()[0], kernel)
    x = np.ones((1, 3), np.float32)
    z = x @ kernel + bias
    np.testing.assert_allclose(model.predict(x), np.exp(z) / np.exp(z).sum(), rtol=1e-6)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == 0.005
    assert model.metrics_names == ["loss", "accuracy"]


def test_reads_are_bounded_by_the_shapes_the_model_expects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _keras2_file(tmp_path / "wrong.h5", np.zeros((4, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(
        ValueError, match=re.escape("weight 'dense_7/kernel:0' is float32(4, 2), the model expects (3, 2)")
    ):
        xpnet.models.load_model(tmp_path / "wrong.h5")
    _keras2_file(tmp_path / "ok.h5", np.zeros((3, 2), np.float32), np.zeros(2, np.float32))
    monkeypatch.setattr(h5_model, "_MAX_JSON", 100)
    with pytest.raises(ValueError, match="more than a model config can be"):
        xpnet.models.load_model(tmp_path / "ok.h5")


def test_h5_names_that_are_not_full_models(tmp_path: Path) -> None:
    assert h5_model.is_legacy_h5("m.h5") and h5_model.is_legacy_h5("M.HDF5")
    assert not h5_model.is_legacy_h5("m.weights.h5") and not h5_model.is_legacy_h5("m.keras")
    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,))])
    model.save_weights(tmp_path / "w.weights.h5")
    (tmp_path / "renamed.h5").write_bytes((tmp_path / "w.weights.h5").read_bytes())
    with pytest.raises(ValueError, match=r"no model_config.*load_weights"):
        xpnet.models.load_model(tmp_path / "renamed.h5")


def test_a_model_with_a_model_inside_round_trips(tmp_path: Path) -> None:
    """The nested model's weights were all named "inner/kernel:0", "inner/bias:0": h5py refused the second
    ("name already exists") and model.save("m.h5") failed; its layers' paths keep them apart."""
    x, _ = _data()
    inner = xpnet.Sequential(
        [xpnet.Input((3,)), xpnet.Dense(4, "relu", name="i1"), xpnet.Dense(2, name="i2")], name="inner"
    )
    model = xpnet.Sequential([xpnet.Input((3,)), inner, xpnet.Dense(1, name="out")], seed=0)
    model.save(tmp_path / "nested.h5")
    loaded = xpnet.models.load_model(tmp_path / "nested.h5")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with h5py.File(tmp_path / "nested.h5", "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["model_weights/inner"].attrs["weight_names"]]
    assert names == ["i1/kernel:0", "i1/bias:0", "i2/kernel:0", "i2/bias:0"]


def test_a_damaged_optimizer_group_is_the_one_error_line() -> None:
    """tests/data/legacy_h5_bad_heap.h5: xpnet's .h5 of test_file_fuzz's model with bytes flipped in the
    optimizer_weights group's heap (fuzz seed 7, case 15); listing the group raised h5py's RuntimeError."""
    path = Path(__file__).parent / "data" / "legacy_h5_bad_heap.h5"
    with pytest.raises(
        FileFormatError, match=r"legacy_h5_bad_heap\.h5 is not a valid Keras \.h5 model file: a damaged"
    ):
        xpnet.models.load_model(path)
