"""Objects as JSON-able configs: what model files store for activations, regularizers, losses, layers.

`serialize(obj)` gives a name for parameter-free built-ins ("relu") and otherwise
{"class_name": ..., "config": {...}} with the object's numeric settings; `xpnet.saving`
turns these back into objects. Nothing here imports the classes it describes, so layers can
call it from their get_config.
"""

from __future__ import annotations

from typing import Any

_SCALARS = (bool, int, float, str, type(None))


def plain_settings(obj: Any) -> dict[str, Any]:
    """The public JSON-able settings of an object (the arguments it was made with, for simple classes)."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and isinstance(v, _SCALARS)}


def serialize(obj: Any) -> Any:
    """A JSON-able description of `obj` (None stays None)."""
    if obj is None:
        return None
    keras_name = getattr(obj, "keras_name", None)
    if isinstance(keras_name, str):  # a user's function (activation, loss): saved by name, as Keras does
        return keras_name
    settings = plain_settings(obj)
    name = getattr(type(obj), "name", None)
    builtin = type(obj).__module__.startswith("xpnet.")
    if builtin and isinstance(name, str) and not settings:
        return name
    return {"class_name": type(obj).__name__, "config": settings}


def layer_entry(layer: Any) -> dict[str, Any]:
    """One layer as Keras writes it in a model config: {"class_name": "Dense", "config": {...}}.

    A model used as a layer is written as Keras writes it: "Sequential" or "Functional" with its own config.
    """
    kind = type(layer).__name__
    if kind == "Model" and hasattr(layer, "nested_layers"):
        kind = "Functional"
    return {"class_name": kind, "config": {**layer.get_config(), "trainable": layer.trainable}}


def sequential_config(model: Any) -> dict[str, Any]:
    """Keras's `Sequential.get_config()`: name, dtype and the layers, an InputLayer first when the input shape is known.

    xpnet adds the model's seed, so `from_config` draws the same initial weights; `clone_model`
    leaves it out to draw fresh ones, as Keras does.
    """
    layers: list[dict[str, Any]] = []
    shape = model.feature_shape
    if shape is not None:
        input_config = {"batch_shape": [None, *shape], "dtype": model.dtype, "name": "input_layer"}
        layers.append({"class_name": "InputLayer", "config": input_config})
    layers += [layer_entry(layer) for layer in model.layers]
    return {"name": model.name, "dtype": model.dtype, "seed": model.seed, "layers": layers}
