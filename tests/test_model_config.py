"""Model-level config: get_config / from_config, to_json / model_from_json, clone_model, as in Keras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from xpnet.models import clone_model, model_from_json


def _mlp(**kw: object) -> xpnet.Sequential:
    return xpnet.Sequential(
        [Dense(16, "gelu", input_shape=(6,), kernel_regularizer="l2"), Dropout(0.2), Dense(3, "softmax", name="out")],
        name="mlp",
        **kw,  # type: ignore[arg-type]
    )


def test_config_is_keras_shaped_and_rebuilds_the_same_model() -> None:
    model = _mlp(seed=3)
    cfg = model.get_config()
    assert cfg["name"] == "mlp" and cfg["dtype"] == "float32" and cfg["seed"] == 3
    assert [e["class_name"] for e in cfg["layers"]] == ["InputLayer", "Dense", "Dropout", "Dense"]
    assert cfg["layers"][0]["config"]["batch_shape"] == [None, 6]
    assert (
        cfg["layers"][3]["config"] == {**model.layers[2].get_config(), "trainable": True}
        and cfg["layers"][3]["config"]["name"] == "out"
    )
    again = xpnet.Sequential.from_config(cfg)
    assert [type(a) for a in again.layers] == [type(b) for b in model.layers]
    assert [a.name for a in again.layers] == [b.name for b in model.layers]
    assert again.layers[0] is not model.layers[0]
    for u, v in zip(again.get_weights(), model.get_weights(), strict=True):  # same seed: same initial weights
        np.testing.assert_array_equal(u, v)
    assert again.get_config() == cfg


def test_to_json_round_trips_through_model_from_json() -> None:
    model = xpnet.Sequential(
        [
            Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1)),
            MaxPooling2D(),
            Flatten(),
            Dense(3, "softmax"),
        ],
        seed=1,
        dtype="float64",
    )
    text = model.to_json()
    spec = json.loads(text)
    assert spec["class_name"] == "Sequential" and spec["config"]["layers"][1]["class_name"] == "Conv2D"
    again = model_from_json(text)
    assert again.dtype == "float64" and again.output_shape == model.output_shape
    x = np.random.default_rng(0).standard_normal((5, 12, 12, 1))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))  # the seed rides in the config
    assert again.to_json() == text


def test_clone_model_gives_new_layers_and_fresh_weights() -> None:
    model = _mlp(seed=3)
    model.compile("adam", "sparse_categorical_crossentropy")
    clone = clone_model(model)
    assert clone.built and clone.loss is None  # Keras: not compiled
    assert [type(a) for a in clone.layers] == [type(b) for b in model.layers]
    assert all(a is not b for a, b in zip(clone.layers, model.layers, strict=True))
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])  # freshly initialized
    assert clone.layers[0].kernel_regularizer is not None and clone.layers[1].rate == 0.2
    assert clone.layers[1].seed != model.layers[1].seed  # its own dropout masks, drawn from the new model seed
    fixed = clone_model(xpnet.Sequential([Dense(2, input_shape=(2,)), Dropout(0.5, seed=11)]))
    assert fixed.layers[1].seed == 11  # a seed the user chose is kept
    unbuilt = xpnet.Sequential([Dense(4, "relu"), Dense(2)])
    twin = clone_model(unbuilt)
    assert not twin.built and [ly.units for ly in twin.layers] == [4, 2]
    twin.build((None, 3))
    assert twin.output_shape == (None, 2)


def test_custom_layers_come_back_through_custom_objects() -> None:
    class Scaled(Dense):
        pass

    model = xpnet.Sequential([Scaled(3, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"unknown Layer class 'Scaled'.*custom_objects"):
        model_from_json(model.to_json())
    assert type(model_from_json(model.to_json(), custom_objects={"Scaled": Scaled}).layers[0]) is Scaled


def test_bad_json_and_configs_raise_errors_that_name_what_was_received() -> None:
    with pytest.raises(ValueError, match=r"expects the JSON text of model\.to_json"):
        model_from_json("{not json")
    with pytest.raises(ValueError, match="builds Sequential and Functional models; the JSON describes 'Model'"):
        model_from_json(json.dumps({"class_name": "Model", "config": {}}))
    with pytest.raises(ValueError, match=r"a functional config is a dict with \['layers'.*received \[\]"):
        model_from_json(json.dumps({"class_name": "Functional", "config": {}}))
    with pytest.raises(ValueError, match=r"a dict with a 'layers' list.*received \['name'\]"):
        xpnet.Sequential.from_config({"name": "x"})
    with pytest.raises(ValueError, match="layer 0 of the config is not"):
        xpnet.Sequential.from_config({"layers": ["Dense"]})
    with pytest.raises(TypeError, match="clone_model expects a Sequential or functional Model, received str"):
        clone_model("model")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["mlp", "lenet", "branches"])
def test_keras_to_json_and_weights_give_the_keras_model(kind: str) -> None:
    """Keras 3's own model.to_json() and .weights.h5 (tests/data, scripts/make_keras_fixtures.py)."""
    pytest.importorskip("h5py")
    data = Path(__file__).parent / "data"
    model = model_from_json((data / f"keras_{kind}.json").read_text())
    model.load_weights(data / f"keras_{kind}.weights.h5")
    ref = np.load(data / f"keras_{kind}.npz")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["pred"], rtol=1e-5, atol=2e-7)
    assert model.layers[0].name == {"mlp": "hidden", "lenet": "conv2d", "branches": "d1"}[kind]


def test_keras_merge_layer_configs_build() -> None:
    """Keras writes dtype and trainable into an Add's or a Concatenate's config too."""
    text = (Path(__file__).parent / "data" / "keras_branches.json").read_text()
    model = model_from_json(text)
    joined = model.get_layer("joined")
    assert isinstance(joined, xpnet.layers.Concatenate) and joined.axis == -1 and joined.output_shape == (6,)
    add = {"class_name": "Add", "config": {"name": "a", "trainable": False, "dtype": {"class_name": "DTypePolicy"}}}
    layer = xpnet.saving.layer_from_config(add, {})
    assert isinstance(layer, xpnet.layers.Add) and layer.name == "a" and not layer.trainable


def test_keras_layer_settings_map_to_xpnet_or_raise() -> None:
    entry = {
        "class_name": "Dense",
        "config": {
            "name": "d",
            "trainable": True,
            "dtype": {"class_name": "DTypePolicy", "config": {"name": "float32"}},
            "units": 2,
            "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.5}},
            "kernel_initializer": {"class_name": "HeNormal", "config": {"seed": None}},
            "kernel_constraint": None,
        },
    }
    model = xpnet.Sequential.from_config({"layers": [entry]})
    assert model.layers[0].kernel_regularizer.l2 == 0.5 and model.layers[0].units == 2
    entry["config"]["kernel_constraint"] = {"class_name": "MaxNorm", "config": {"max_value": 2}}
    with pytest.raises(ValueError, match=r"Dense: the config's kernel_constraint=.*MaxNorm.*no counterpart"):
        xpnet.Sequential.from_config({"layers": [entry]})
    # what Keras 3.15 writes for a default BatchNormalization: renorm off (its momentum then unused)
    bn = {"class_name": "BatchNormalization", "config": {"name": "bn", "renorm": False, "renorm_clipping": None}}
    bn["config"]["renorm_momentum"] = 0.99
    model = xpnet.Sequential.from_config({"layers": [{**entry, "config": {"name": "d", "units": 2}}, bn]})
    assert isinstance(model.layers[1], xpnet.layers.BatchNormalization)
    bn["config"]["renorm"] = True
    with pytest.raises(ValueError, match=r"BatchNormalization: the config's renorm=True has no counterpart"):
        xpnet.Sequential.from_config({"layers": [bn]})


def test_functional_json_and_clone_rebuild_the_graph() -> None:
    """to_json / model_from_json and clone_model work on a functional model too (Keras's "Functional")."""
    x = xpnet.Input((4,), name="x")
    h = xpnet.layers.Dense(5, "relu", name="h")(x)
    y = xpnet.layers.Dense(2, name="y")(xpnet.layers.Add()([h, xpnet.layers.Dense(5, name="r")(h)]))
    model = xpnet.Model(x, y, name="res", seed=4)
    text = model.to_json()
    assert json.loads(text)["class_name"] == "Functional"
    again = model_from_json(text)
    assert isinstance(again, xpnet.Model) and [la.name for la in again.layers] == ["h", "r", "add", "y"]
    clone = clone_model(model)
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]
    assert not all(np.array_equal(a, b) for a, b in zip(clone.get_weights(), model.get_weights(), strict=True))
    data = np.ones((3, 4), "float32")
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(data), model.predict(data))
