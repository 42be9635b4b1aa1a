from typing import Any

from .activation import Activation
from .base import Layer, ParamSpec
from .batch_normalization import BatchNormalization
from .conv import Conv2D
from .conv1d import Conv1D
from .conv2d_transpose import Conv2DTranspose
from .dense import Dense
from .dropout import Dropout
from .elementwise import LeakyReLU, Rescaling
from .elu import ELU
from .flatten import Flatten
from .global_average_pooling1d import GlobalAveragePooling1D, GlobalAvgPool1D
from .global_max_pooling1d import GlobalMaxPool1D, GlobalMaxPooling1D
from .global_max_pooling2d import GlobalMaxPool2D, GlobalMaxPooling2D
from .input import Input
from .max_pooling1d import MaxPool1D, MaxPooling1D
from .merge import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .normalization import Normalization
from .op_layer import OpLayer
from .pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxPooling2D,
)
from .prelu import PReLU
from .relu import ReLU
from .reshape import Reshape
from .softmax import Softmax
from .up_sampling2d import UpSampling2D

InputLayer = Input
Convolution2D = Conv2D
Convolution1D = Conv1D
Convolution2DTranspose = Conv2DTranspose

__all__ = [
    "ELU",
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "AvgPool2D",
    "BatchNormalization",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Conv2DTranspose",
    "Convolution1D",
    "Convolution2D",
    "Convolution2DTranspose",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Input",
    "InputLayer",
    "Layer",
    "LeakyReLU",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPooling1D",
    "MaxPooling2D",
    "Maximum",
    "Minimum",
    "Multiply",
    "Normalization",
    "OpLayer",
    "PReLU",
    "ParamSpec",
    "ReLU",
    "Rescaling",
    "Reshape",
    "Softmax",
    "Subtract",
    "UpSampling2D",
    "add",
    "average",
    "concatenate",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]


def serialize(layer: Layer) -> dict[str, Any]:
    """A layer as Keras's `layers.serialize` gives it: {"module", "class_name", "config", "registered_name"}."""
    from ..io.serialization import serialize_keras_object

    if not isinstance(layer, Layer):
        raise TypeError(f"layers.serialize expects a Layer, received {type(layer).__name__}")
    out: dict[str, Any] = serialize_keras_object(layer)
    return out


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Layer:
    """A new layer (fresh weights) from `serialize`'s dict (or Keras's {"class_name", "config"})."""
    from ..io.serialization import deserialize_keras_object

    layer = deserialize_keras_object(config, custom_objects)
    if not isinstance(layer, Layer):
        raise TypeError(f"layers.deserialize: {config.get('class_name')!r} is not a layer")
    return layer
