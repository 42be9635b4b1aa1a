from .activation import Activation
from .base import Layer, ParamSpec
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .input import Input

InputLayer = Input

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Layer", "ParamSpec"]
