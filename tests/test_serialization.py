"""Keras's saving registry, written from keras.io's "Serialization and saving" guide: a registered
custom layer loads without custom_objects, scopes, serialize/deserialize of layers and objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import saving, utils
from xpnet.serialization import _NAMES, _REGISTRY


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    before, names = dict(_REGISTRY), dict(_NAMES)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)
    _NAMES.clear()
    _NAMES.update(names)


def _scale_layer() -> type:
    class KapiScale(xpnet.layers.Layer):
        """Multiplies by a fixed factor (no weights), forward and backward by hand."""

        def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor = float(factor)

        def forward(self, x: Any, training: bool = False) -> Any:
            return x * self.factor

        def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
            return dy * self.factor

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "factor": self.factor}

    return KapiScale


def test_a_registered_layer_loads_without_custom_objects(tmp_path: Path) -> None:
    cls = saving.register_keras_serializable(package="kapi_tests")(_scale_layer())
    assert saving.get_registered_name(cls) == "kapi_tests>KapiScale"
    assert saving.get_custom_objects()["kapi_tests>KapiScale"] is cls
    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,)), cls(factor=3.0)], seed=0)
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.keras")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[1]) is cls and loaded.layers[1].factor == 3.0
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert type(xpnet.models.model_from_json(model.to_json()).layers[1]) is cls


def test_a_scope_lends_names_only_inside_it(tmp_path: Path) -> None:
    cls = _scale_layer()
    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,)), cls()], seed=0)
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="custom_objects"):
        xpnet.models.load_model(tmp_path / "m.keras")
    with utils.custom_object_scope({"KapiScale": cls}):
        assert type(xpnet.models.load_model(tmp_path / "m.keras").layers[1]) is cls
    with pytest.raises(ValueError, match="custom_objects"):
        xpnet.models.load_model(tmp_path / "m.keras")
    utils.get_custom_objects().update({"KapiScale": cls})  # Keras's other documented way
    assert type(xpnet.models.load_model(tmp_path / "m.keras").layers[1]) is cls


def test_layers_serialize_and_deserialize_round_trip() -> None:
    dense = xpnet.Dense(4, "relu", name="hidden", kernel_regularizer=xpnet.regularizers.L2(0.01))
    config = xpnet.layers.serialize(dense)
    assert config["class_name"] == "Dense" and config["module"].startswith("xpnet")
    assert config["config"]["units"] == 4 and config["config"]["name"] == "hidden"
    again = xpnet.layers.deserialize(config)
    assert type(again) is xpnet.Dense and again is not dense
    assert again.get_config() == dense.get_config()
    cls = saving.register_keras_serializable("kapi_tests")(_scale_layer())
    scale = xpnet.layers.deserialize(xpnet.layers.serialize(cls(factor=5.0)))
    assert type(scale) is cls and scale.factor == 5.0


def test_objects_serialize_and_deserialize_round_trip() -> None:
    opt = xpnet.optimizers.Adam(learning_rate=0.005)
    back = saving.deserialize_keras_object(saving.serialize_keras_object(opt))
    assert type(back) is xpnet.optimizers.Adam and back.learning_rate == 0.005
    metric = saving.deserialize_keras_object(saving.serialize_keras_object(xpnet.metrics.BinaryAccuracy(threshold=0.7)))
    assert type(metric) is xpnet.metrics.BinaryAccuracy and metric.threshold == 0.7
    for obj in (xpnet.metrics.BinaryCrossentropy(from_logits=True), xpnet.losses.BinaryCrossentropy(name="bce")):
        copy = saving.deserialize_keras_object(saving.serialize_keras_object(obj))
        assert type(copy) is type(obj) and repr(copy) == repr(obj)
    assert saving.serialize_keras_object([1, "a", None, {"k": 2.5}]) == [1, "a", None, {"k": 2.5}]
    assert type(saving.deserialize_keras_object("mse")).__name__ == "MeanSquaredError"

    @saving.register_keras_serializable(package="kapi_tests", name="double")
    def double(x: Any) -> Any:
        return 2 * x

    assert saving.serialize_keras_object(double) == "kapi_tests>double"
    assert saving.deserialize_keras_object("kapi_tests>double") is double
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        saving.deserialize_keras_object("nope")


def test_running_a_notebook_cell_again_registers_the_new_class(tmp_path: Path) -> None:
    # Keras replaces the entry: re-running the cell that defines a registered layer must not fail,
    # and a model saved after it loads the class of the latest run
    old = saving.register_keras_serializable("kapi_tests")(_scale_layer())
    new = saving.register_keras_serializable("kapi_tests")(_scale_layer())
    assert old is not new and saving.get_custom_objects()["kapi_tests>KapiScale"] is new
    assert saving.get_registered_name(new) == "kapi_tests>KapiScale"
    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,)), new(factor=3.0)], seed=0)
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.keras")
    assert type(xpnet.models.load_model(tmp_path / "m.keras").layers[1]) is new


def test_registration_mistakes_are_named() -> None:
    cls = _scale_layer()
    saving.register_keras_serializable("kapi_tests")(cls)
    with pytest.raises(ValueError, match="without '>'"):
        saving.register_keras_serializable("a>b")
    with pytest.raises(TypeError, match="dicts"), utils.custom_object_scope(cls):  # type: ignore[arg-type]
        pass
