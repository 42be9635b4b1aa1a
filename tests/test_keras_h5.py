"""Keras 3 .weights.h5 files: xpnet reads what Keras wrote and writes what Keras reads.

The fixtures in tests/data were written by Keras 3 (scripts/make_keras_fixtures.py): the
weights after one epoch of training, Keras's predictions, and its sample/class-weighted numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import h5_weights
from xpnet.layers import Concatenate, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

h5py = pytest.importorskip("h5py")
DATA = Path(__file__).parent / "data"


def _mlp(dtype: str = "float32") -> xpnet.Sequential:
    layers = [Dense(16, "relu", input_shape=(6,), name="hidden"), Dense(8, "tanh"), Dense(3, "softmax")]
    return xpnet.Sequential(layers, name="mlp", dtype=dtype)


def _lenet() -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Conv2D(4, (3, 3), activation="relu", input_shape=(12, 12, 1)),
            MaxPooling2D((2, 2)),
            Flatten(),
            Dense(10, "relu"),
            Dense(3, "softmax"),
        ],
        name="lenet",
    )


@pytest.mark.parametrize(("kind", "make"), [("mlp", _mlp), ("lenet", _lenet)])
def test_xpnet_reads_a_keras_file_and_predicts_what_keras_predicted(kind: str, make: object) -> None:
    ref = np.load(DATA / f"keras_{kind}.npz")
    model = make()  # type: ignore[operator]
    model.load_weights(DATA / f"keras_{kind}.weights.h5")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["pred"], rtol=1e-5, atol=2e-7)
    with h5py.File(DATA / f"keras_{kind}.weights.h5") as f:  # the kernel layouts agree, not just the outputs
        np.testing.assert_array_equal(model.layers[0].get_weights()[0], f["layers"][model_paths(model)[0]]["vars"]["0"])


def _branches() -> xpnet.Model:
    """xpnet's twin of make_keras_fixtures.branches: branches of unequal depth, called short-branch first."""
    x = Input((4,), name="x")
    short = Dense(3, name="short")(x)
    deep = Dense(3, name="d2")(Dense(3, "tanh", name="d1")(x))
    return xpnet.Model(x, Dense(3, "softmax", name="out")(Concatenate(name="joined")([short, deep])), name="branches")


def test_a_functional_model_lists_its_layers_as_keras_and_reads_keras_files() -> None:
    """Keras orders a functional model's layers deepest first (d1 before short) and its .weights.h5 matches
    layers by class and position: a call-order list put d1's weights into `short` without an error."""
    ref = np.load(DATA / "keras_branches.npz")
    model = _branches()
    assert [layer.name for layer in model.layers] == ["d1", "short", "d2", "joined", "out"]
    model.load_weights(DATA / "keras_branches.weights.h5")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["pred"], rtol=1e-5, atol=2e-7)


def model_paths(model: xpnet.Sequential) -> list[str]:
    return h5_weights.layer_paths(model.layers)


def test_keras_sample_weighted_evaluate_and_class_weighted_step_match_keras() -> None:
    """Keras's evaluate(sample_weight=) with weighted_metrics, and one SGD step with class_weight."""
    ref = np.load(DATA / "keras_mlp.npz")
    x, y, sw = ref["x"], ref["y"], ref["sample_weight"]
    model = _mlp()
    model.load_weights(DATA / "keras_mlp.weights.h5")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    got = model.evaluate(x, y, sample_weight=sw, batch_size=len(x), verbose=0, return_dict=True)
    loss, acc, weighted_acc = ref["weighted_eval"]
    assert got["loss"] == pytest.approx(loss, rel=1e-6)
    assert got["accuracy"] == pytest.approx(acc, rel=1e-6)
    assert got["weighted_accuracy"] == pytest.approx(weighted_acc, rel=1e-6)
    plain = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    assert [plain["loss"], plain["accuracy"]] == pytest.approx(list(ref["plain_eval"]), rel=1e-6)
    model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    table = dict(enumerate(ref["class_weight"].tolist()))
    model.fit(x, y, class_weight=table, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    after = np.concatenate([w.ravel() for w in model.get_weights()])
    np.testing.assert_allclose(after, ref["after_class_weighted_step"], rtol=1e-5, atol=1e-6)


def test_the_file_xpnet_writes_has_keras_layout(tmp_path: Path) -> None:
    model = xpnet.Sequential([Dense(4, "relu", input_shape=(3,), name="a"), Dropout(0.5), Dense(2, name="b")], name="m")
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert f["vars"].attrs["name"] == "m" and len(f["vars"]) == 0
        assert sorted(f["layers"]) == ["dense", "dense_1", "dropout"]
        assert f["layers/dense/vars"].attrs["name"] == "a" and f["layers/dense_1/vars"].attrs["name"] == "b"
        assert sorted(f["layers/dense/vars"]) == ["0", "1"] and len(f["layers/dropout/vars"]) == 0
        np.testing.assert_array_equal(f["layers/dense/vars/0"][()], model.layers[0].get_weights()[0])
        assert f["layers/dense/vars/0"].dtype == np.float32 and f["layers/dense_1/vars/1"].shape == (2,)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_then_load_gives_back_the_same_weights(tmp_path: Path, dtype: str) -> None:
    a, b = _mlp(dtype), _mlp(dtype)
    a.save_weights(tmp_path / "w.weights.h5")
    b.load_weights(tmp_path / "w.weights.h5")
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        assert v.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(u, v)


def test_snake_case_paths_follow_keras() -> None:
    names = ["Dense", "Conv2D", "MaxPooling2D", "BatchNormalization", "GlobalAveragePooling2D", "LeakyReLU"]
    assert [h5_weights.snake_case(n) for n in names] == [
        "dense",
        "conv2d",
        "max_pooling2d",
        "batch_normalization",
        "global_average_pooling2d",
        "leaky_re_lu",
    ]


def test_a_different_architecture_is_refused_and_the_model_is_unchanged(tmp_path: Path) -> None:
    model = _lenet()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"different architecture:\n  file: .*dense_1\[\(16, 8\)"):
        model.load_weights(DATA / "keras_mlp.weights.h5")
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    wider = xpnet.Sequential([Dense(16, "relu", input_shape=(6,)), Dense(8), Dense(3), Dense(2)])
    with pytest.raises(ValueError, match="different architecture"):
        wider.load_weights(DATA / "keras_mlp.weights.h5")
    with pytest.raises(ValueError, match="the model is not built yet"):
        xpnet.Sequential([Dense(3)]).load_weights(DATA / "keras_mlp.weights.h5")


def test_files_that_are_not_keras_3_weights_get_clear_errors(tmp_path: Path) -> None:
    model = _mlp()
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        model.load_weights(junk)
    legacy = tmp_path / "old.weights.h5"
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
    with pytest.raises(ValueError, match=r"no 'layers' group.*Keras 2"):
        model.load_weights(legacy)
    renamed = tmp_path / "keras.h5"
    renamed.write_bytes((DATA / "keras_mlp.weights.h5").read_bytes())
    with pytest.raises(ValueError, match=r"is an HDF5 file.*name ends in \.weights\.h5 \(e\.g\. keras\.weights\.h5\)"):
        model.load_weights(renamed)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        model.load_weights(tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match=r"use a name ending in \.npz \(or \.weights\.h5"):
        model.save_weights(tmp_path / "w.h5")


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "w.weights.h5"
    _mlp().save_weights(target)
    before = target.read_bytes()

    def boom(layers: object) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5_weights, "layer_paths", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        _lenet().save_weights(target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.weights.h5"]


def test_without_h5py_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install xpnet\[h5\]"):
        _mlp().save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ModuleNotFoundError, match=r"pip install xpnet\[h5\]"):
        _mlp().load_weights(DATA / "keras_mlp.weights.h5")
    assert list(tmp_path.iterdir()) == []


def test_keras_reads_the_file_xpnet_writes(tmp_path: Path) -> None:
    """Runs where Keras 3 and a backend import (e.g. KERAS_BACKEND=torch); skipped otherwise."""
    if "KERAS_BACKEND" not in os.environ and pytest.importorskip("torch"):
        os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    try:
        import make_keras_fixtures as fixtures
    finally:
        sys.path.pop(0)
    for kind, make in (("mlp", _mlp), ("lenet", _lenet)):
        model = make()
        model.save_weights(tmp_path / f"{kind}.weights.h5")
        x = np.load(DATA / f"keras_{kind}.npz")["x"]
        theirs = fixtures.check_xpnet_file(tmp_path / f"{kind}.weights.h5", kind, x)
        np.testing.assert_allclose(
            theirs, model.predict(x), rtol=1e-5, atol=2e-7, err_msg=f"{kind}, {keras.__version__}"
        )


def test_model_checkpoint_writes_keras_weights_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 3, 32)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = xpnet.callbacks.ModelCheckpoint(tmp_path / "w-{epoch:02d}.weights.h5", save_weights_only=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01.weights.h5", "w-02.weights.h5"]
    other = _mlp()
    other.load_weights(tmp_path / "w-02.weights.h5")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match=r"must end in \.npz or \.weights\.h5"):
        xpnet.callbacks.ModelCheckpoint(tmp_path / "w.h5", save_weights_only=True)
