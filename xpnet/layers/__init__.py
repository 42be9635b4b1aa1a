from typing import Any

from .activation import Activation
from .base import Layer, ParamSpec
from .batch_normalization import BatchNormalization
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .elementwise import LeakyReLU, Rescaling
from .flatten import Flatten
from .input import Input
from .merge import Add, Average, Concatenate, Multiply, Subtract
from .normalization import Normalization
from .pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxPooling2D,
)
from .reshape import Reshape

InputLayer = Input
Convolution2D = Conv2D

__all__ = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "AvgPool2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Convolution2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalAvgPool2D",
    "Input",
    "InputLayer",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "MaxPooling2D",
    "Multiply",
    "Normalization",
    "ParamSpec",
    "Rescaling",
    "Reshape",
    "Subtract",
]


def serialize(layer: Layer) -> dict[str, Any]:
    """A layer as Keras's `layers.serialize` gives it: {"module", "class_name", "config", "registered_name"}."""
    from ..serialization import serialize_keras_object

    if not isinstance(layer, Layer):
        raise TypeError(f"layers.serialize expects a Layer, received {type(layer).__name__}")
    out: dict[str, Any] = serialize_keras_object(layer)
    return out


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Layer:
    """A new layer (fresh weights) from `serialize`'s dict (or Keras's {"class_name", "config"})."""
    from ..serialization import deserialize_keras_object

    layer = deserialize_keras_object(config, custom_objects)
    if not isinstance(layer, Layer):
        raise TypeError(f"layers.deserialize: {config.get('class_name')!r} is not a layer")
    return layer
