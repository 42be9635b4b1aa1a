"""xpnet: Keras-style multilayer perceptrons whose math runs on NumPy (CPU) or CuPy (CUDA GPU)."""

from . import (
    activations,
    callbacks,
    checkpoint,
    initializers,
    layers,
    linear_regression,
    losses,
    metrics,
    optimizers,
    regularizers,
)
from .backend import BackendUnavailableError, available_backends, get_backend, use_backend
from .callbacks import Callback, EarlyStopping, History
from .functional import Model
from .layers import (
    ELU,
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPool2D,
    MaxPooling2D,
    Normalization,
    PReLU,
    ReLU,
    Reshape,
    Softmax,
)
from .models import Sequential
from .perceptron import Perceptron
from .random import set_random_seed

__version__ = "0.1.0"

# Imported on first use (`xpnet.datasets.fashion_mnist`, as Keras's `keras.datasets`), so that
# `import xpnet` stays quick.
_LAZY = ("datasets", "evaluation", "gradcheck", "search", "trace", "utils")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xpnet' has no attribute {name!r}")


__all__ = [
    "ELU",
    "Activation",
    "AveragePooling2D",
    "BackendUnavailableError",
    "BatchNormalization",
    "Callback",
    "Conv2D",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "GlobalAveragePooling2D",
    "History",
    "Input",
    "MaxPool2D",
    "MaxPooling2D",
    "Model",
    "Normalization",
    "PReLU",
    "Perceptron",
    "ReLU",
    "Reshape",
    "Sequential",
    "Softmax",
    "activations",
    "available_backends",
    "callbacks",
    "checkpoint",
    "evaluation",
    "get_backend",
    "gradcheck",
    "initializers",
    "layers",
    "linear_regression",
    "losses",
    "metrics",
    "optimizers",
    "regularizers",
    "search",
    "set_random_seed",
    "trace",
    "use_backend",
]
