"""model.save("m.keras") writes Keras 3's .keras zip and load_model reads Keras's own; older xpnet files still load.

tests/data/keras_<name>.keras were written by Keras 3.15.1's model.save (scripts/make_keras_fixtures.py
--keras-files); the test that has Keras itself read xpnet's file runs only where Keras is installed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense, Dropout
from xpnet.models import Sequential, load_model

h5py = pytest.importorskip("h5py")

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def _mlp(seed: int = 0) -> Sequential:
    layers = [xpnet.Input((6,)), Dense(16, activation="relu"), Dropout(0.2), Dense(3, activation="softmax")]
    return Sequential(layers, seed=seed)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, size=64)


@pytest.mark.parametrize("name", ["mlp", "lenet", "branches"])
def test_a_keras_written_keras_file_loads_and_predicts_as_keras(name: str) -> None:
    ref = np.load(DATA / f"keras_{name}.npz")
    model = load_model(DATA / f"keras_{name}.keras")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["pred"], rtol=1e-5, atol=1e-6)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == pytest.approx(1e-3)
    assert type(model.loss).__name__ == "SparseCategoricalCrossentropy"


def test_save_writes_keras_layout_and_resumes_exactly(tmp_path: Path) -> None:
    x, y = _data()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        config = json.loads(z.read("config.json"))
        assert json.loads(z.read("metadata.json"))["keras_version"].startswith("3.")
    assert {"config.json", "metadata.json", "model.weights.h5"} <= names
    assert config["class_name"] == "Sequential" and config["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert [e["class_name"] for e in config["config"]["layers"]] == ["InputLayer", "Dense", "Dropout", "Dense"]

    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # same slots, step, dropout counters, shuffle key
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_functional_model_round_trips_through_keras_layout(tmp_path: Path) -> None:
    inp = xpnet.Input((4,))
    a = Dense(3, activation="relu")(inp)
    b = Dense(2)(Dense(5)(inp))
    out = Dense(2, activation="softmax")(xpnet.layers.Concatenate()([a, b]))
    model = xpnet.Model(inp, out)
    model.compile("sgd", "mse")
    model.save(tmp_path / "f.keras")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    loaded = load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert type(loaded.optimizer).__name__ == "SGD"


def test_older_npz_based_keras_files_still_load(tmp_path: Path) -> None:
    x, _ = _data()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.npz")  # the layout main wrote under a .keras name
    (tmp_path / "m.npz").rename(tmp_path / "old.keras")
    loaded = load_model(tmp_path / "old.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_without_h5py_keras_save_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    model = _mlp()
    with pytest.raises(ModuleNotFoundError, match=r"pip install xpnet\[h5\]") as info:
        model.save(tmp_path / "m.keras")
    assert "\n" not in str(info.value) and not list(tmp_path.iterdir())
    model.save(tmp_path / "m.npz")  # the .npz layout needs nothing extra
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").get_weights()[0], model.get_weights()[0])


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs Keras 3 (pip install keras jax)")
def test_keras_itself_loads_an_xpnet_keras_file(tmp_path: Path) -> None:
    x, y = _data()
    model = _mlp()
    schedule = xpnet.schedules.ExponentialDecay(0.01, 100, 0.9)  # Keras must find it by its module
    model.compile(xpnet.optimizers.Adam(schedule), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    script = [str(ROOT / "scripts" / "make_keras_fixtures.py"), "--check", str(tmp_path / "m.keras"), "model"]
    done = subprocess.run([sys.executable, *script, str(tmp_path / "x.npy")], capture_output=True, text=True, env=env)
    if done.returncode and "No module named" in done.stderr:  # Keras without its backend installed
        pytest.skip(f"Keras cannot run here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "m.pred.npy"), model.predict(x), rtol=1e-5, atol=1e-6)


def _with_compile_config(tmp_path: Path, compile_config: dict[str, object]) -> Path:
    src = DATA / "keras_mlp.keras"
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    config["compile_config"] = {**config["compile_config"], **compile_config}
    members["config.json"] = json.dumps(config).encode()
    out = tmp_path / "m.keras"
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out


def test_keras_compile_objects_with_default_settings_compile_in_xpnet(tmp_path: Path) -> None:
    loss = {
        "module": "keras.losses",
        "class_name": "SparseCategoricalCrossentropy",
        "config": {"name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size", "from_logits": True},
    }
    decay = {"initial_learning_rate": 0.01, "decay_steps": 100, "decay_rate": 0.9, "name": "ExponentialDecay"}
    schedule = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay", "config": decay}
    rms = {
        "name": "rmsprop",
        "learning_rate": schedule,
        "rho": 0.8,
        "momentum": 0.0,
        "epsilon": 1e-7,
        "centered": False,
    }
    optimizer = {"module": "keras.optimizers", "class_name": "RMSprop", "config": rms}
    model = load_model(_with_compile_config(tmp_path, {"loss": loss, "optimizer": optimizer}))
    assert type(model.optimizer).__name__ == "RMSprop" and model.optimizer.rho == pytest.approx(0.8)
    rate = model.optimizer.get_config()["learning_rate"]
    assert rate["class_name"] == "ExponentialDecay" and rate["config"]["decay_rate"] == pytest.approx(0.9)
    assert type(model.loss).__name__ == "SparseCategoricalCrossentropy" and model.loss.from_logits is True


def test_keras_settings_xpnet_lacks_load_the_weights_uncompiled_with_a_warning(tmp_path: Path) -> None:
    loss = {"module": "keras.losses", "class_name": "CategoricalCrossentropy", "config": {"label_smoothing": 0.1}}
    with pytest.warns(RuntimeWarning, match=r"CategoricalCrossentropy settings \{'label_smoothing': 0.1\}"):
        model = load_model(_with_compile_config(tmp_path, {"loss": loss}))
    ref = np.load(DATA / "keras_mlp.npz")
    assert model.optimizer is None
    np.testing.assert_allclose(model.predict(ref["x"]), ref["pred"], rtol=1e-5, atol=1e-6)


def _nested_models() -> dict[str, xpnet.models.Model]:
    """A Sequential in a Sequential, the same Sequential in a functional model, a functional model in a Sequential."""
    from xpnet.layers import Flatten, Softmax
    from xpnet.models import Model

    inner = Sequential([xpnet.Input((2, 3)), Flatten(), Dense(4, activation="relu", name="hidden"), Dense(3)], seed=1)
    a = xpnet.Input((2, 3))
    b = xpnet.Input((2, 3))
    base = Model(b, Dense(3)(Flatten()(b)), name="base", seed=2)
    return {
        "seq": Sequential([inner, Softmax()], name="outer"),
        "func": Model(a, Softmax()(inner(a)), name="func"),
        "fseq": Sequential([xpnet.Input((2, 3)), base, Softmax()], name="fouter"),
    }


_KERAS_NESTED = """
import sys, numpy as np, keras
out, x = sys.argv[1], np.load(sys.argv[2])
inner = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(), keras.layers.Dense(4, activation="relu"),
                          keras.layers.Dense(3)], name="inner")
a = keras.Input((2, 3))
b = keras.Input((2, 3))
base = keras.Model(b, keras.layers.Dense(3)(keras.layers.Flatten()(b)), name="base")
models = {"seq": keras.Sequential([keras.Input((2, 3)), inner, keras.layers.Softmax()], name="outer"),
          "func": keras.Model(a, keras.layers.Softmax()(inner(a)), name="func"),
          "fseq": keras.Sequential([keras.Input((2, 3)), base, keras.layers.Softmax()], name="fouter")}
for name, model in models.items():
    model.save(f"{out}/k_{name}.keras")
    model.save_weights(f"{out}/k_{name}.weights.h5")
    np.save(f"{out}/k_{name}.pred.npy", model.predict(x, verbose=0))
"""


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs Keras 3 (pip install keras jax)")
def test_nested_models_cross_between_keras_and_xpnet_both_ways(tmp_path: Path) -> None:
    """Keras 3 reads xpnet's .keras files of models inside models, and xpnet reads Keras's (.keras and
    .weights.h5): the inner model's layers under layers/<its class>/layers/, its config inside the outer's."""
    x = np.random.default_rng(0).normal(size=(8, 2, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    done = subprocess.run(
        [sys.executable, "-c", _KERAS_NESTED, str(tmp_path), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode and "No module named" in done.stderr:
        pytest.skip(f"Keras cannot run here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    for name, model in _nested_models().items():
        ref = np.load(tmp_path / f"k_{name}.pred.npy")
        loaded = load_model(tmp_path / f"k_{name}.keras")
        assert [type(layer).__name__ for layer in loaded.layers][-1] == "Softmax"
        np.testing.assert_allclose(loaded.predict(x), ref, rtol=1e-5, atol=1e-6)
        model.load_weights(tmp_path / f"k_{name}.weights.h5")
        np.testing.assert_allclose(model.predict(x), ref, rtol=1e-5, atol=1e-6)
        model.save(tmp_path / f"x_{name}.keras")
        script = [str(ROOT / "scripts" / "make_keras_fixtures.py"), "--check", str(tmp_path / f"x_{name}.keras")]
        done = subprocess.run(
            [sys.executable, *script, "model", str(tmp_path / "x.npy")], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr[-2000:]
        np.testing.assert_allclose(np.load(tmp_path / f"x_{name}.pred.npy"), ref, rtol=1e-5, atol=1e-6)


def test_a_nested_models_keras_file_has_keras_groups_and_config(tmp_path: Path) -> None:
    models = _nested_models()
    models["func"].save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = json.loads(z.read("config.json"))
        weights = z.read("model.weights.h5")
    entry = next(e for e in config["config"]["layers"] if e["class_name"] == "Sequential")
    assert entry["module"] == "keras" and entry["registered_name"] is None
    assert [e["module"] for e in entry["config"]["layers"]] == ["keras.layers"] * 4  # InputLayer, Flatten, 2 Dense
    with h5py.File(io.BytesIO(weights), "r") as f:
        assert f["layers/sequential/vars"].attrs["name"] == "sequential"
        assert f["layers/sequential/layers/dense/vars"].attrs["name"] == "hidden"
        assert f["layers/sequential/layers/dense/vars/0"].shape == (6, 4)
        assert f["layers/sequential/layers/dense_1/vars/1"].shape == (3,)
    np.testing.assert_array_equal(load_model(tmp_path / "m.keras").get_weights()[0], models["func"].get_weights()[0])
