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
from .op_layer import OpLayer
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
    "OpLayer",
    "ParamSpec",
    "Rescaling",
    "Reshape",
    "Subtract",
]
