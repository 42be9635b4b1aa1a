from .activation import Activation
from .base import Layer, ParamSpec
from .batch_normalization import BatchNormalization
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .elementwise import LeakyReLU, Rescaling
from .elu import ELU
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
from .prelu import PReLU
from .relu import ReLU
from .reshape import Reshape
from .softmax import Softmax

InputLayer = Input
Convolution2D = Conv2D

__all__ = [
    "ELU",
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
    "PReLU",
    "ParamSpec",
    "ReLU",
    "Rescaling",
    "Reshape",
    "Softmax",
    "Subtract",
]
