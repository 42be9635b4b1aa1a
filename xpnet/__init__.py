"""xpnet: Keras-style multilayer perceptrons whose math runs on NumPy (CPU) or CuPy (CUDA GPU).

Every public layer is also here at the top level (`xpnet.Add` as well as `xpnet.layers.Add`).
"""

from . import (
    activations,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    regularizers,
)
from .backend import BackendUnavailableError, available_backends, get_backend, use_backend
from .layers import *  # noqa: F403  (every public layer, as keras.layers names them)
from .models import Model, Sequential
from .random import set_random_seed
from .teaching import linear_regression
from .teaching.perceptron import Perceptron
from .training import callbacks, checkpoint
from .training.callbacks import Callback, EarlyStopping, History

__version__ = "0.1.0"

# Imported on first use (`xpnet.datasets.fashion_mnist`, as Keras's `keras.datasets`), so that
# `import xpnet` stays quick.
_LAZY = {
    "datasets": ".datasets",
    "utils": ".utils",
    "evaluation": ".teaching.evaluation",
    "gradcheck": ".teaching.gradcheck",
    "trace": ".teaching.trace",
    "search": ".apps.search",
    # old paths of modules that now live in a package by role (the modules under their old names
    # are thin aliases, so `xpnet.saving.load_model` and `import xpnet.saving` both keep working)
    **{name: f".io.{name}" for name in ("saving", "weights_io", "h5_weights", "h5_model", "keras_format")},
    **{name: f".io.{name}" for name in ("file_checks", "serialization", "config")},
    **{name: f".teaching.{name}" for name in ("parity", "experiments")},
    **{name: f".apps.{name}" for name in ("cli", "plots")},
    **{name: f".training.{name}" for name in ("distributed", "threads", "runlock")},
    **{name: f".models.{name}" for name in ("functional", "summary", "sharing")},
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(_LAZY[name], __name__)
    raise AttributeError(f"module 'xpnet' has no attribute {name!r}")


__all__ = [
    "BackendUnavailableError",
    "Callback",
    "EarlyStopping",
    "History",
    "Model",
    "Perceptron",
    "Sequential",
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
    *(name for name in layers.__all__ if name != "ParamSpec"),
]
