"""The course's Fashion-MNIST models, their training defaults, data prep and reference numbers.

Model A: Flatten 28×28 → Dense 300 relu → Dense 100 relu → Dense 10 softmax (266,610 params),
trained with SGD lr 0.01, batch 32, 30 epochs. Model B (the exercise): Flatten → Dense 128 relu →
Dropout 0.2 → Dense 10 softmax (101,770 params), Adam lr 0.001, batch 1000, 15 epochs.
LeNet (the course's "LeNet-5 type" CNN): Conv2D 6 5×5 same relu → MaxPool 2 → Conv2D 16 5×5 same
relu → MaxPool 2 → Flatten → Dense 120 relu → Dense 84 relu → Dense 10 softmax (107,786 params)
on (28, 28, 1) images, SGD lr 0.01, batch 32, 10 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from ..models.sequential import Sequential
from ..optimizers import SGD, Adam, Optimizer, RMSprop

__all__ = [
    "DEFAULTS",
    "MODELS",
    "Defaults",
    "as_model_input",
    "build_model",
    "course_reference",
    "make_optimizer",
    "prepare_fashion_mnist",
]

MODELS = ("A", "B", "LENET")
LOSS = "sparse_categorical_crossentropy"
METRICS = ["accuracy"]
N_VALIDATION = 5000


@dataclass(frozen=True)
class Defaults:
    """Training settings the course uses for one model."""

    optimizer: str  # "sgd", "adam" or "rmsprop"
    learning_rate: float
    batch_size: int
    epochs: int


DEFAULTS: dict[str, Defaults] = {
    "A": Defaults(optimizer="sgd", learning_rate=0.01, batch_size=32, epochs=30),
    "B": Defaults(optimizer="adam", learning_rate=0.001, batch_size=1000, epochs=15),
    "LENET": Defaults(optimizer="sgd", learning_rate=0.01, batch_size=32, epochs=10),
}

# The course's LeNet with this recipe elsewhere (../shared/REFERENCE.md, two seeds each):
# PyTorch 2.13 eager 0.8819 / 0.8722, Keras 3.15 0.8708 / 0.8787 test accuracy after 10 epochs.
LENET_PEER_TEST_ACCURACY = (0.8708, 0.8819)

# Keras run from the course (../shared/REFERENCE.md), model A, SGD lr 0.01, batch 32.
# epoch (1-based) -> (loss, accuracy, val_loss, val_accuracy)
_COURSE_A: dict[int, tuple[float, float, float, float]] = {
    1: (0.7158, 0.7652, 0.5024, 0.8368),
    2: (0.4862, 0.8314, 0.4475, 0.8480),
    3: (0.4408, 0.8455, 0.4246, 0.8558),
    4: (0.4142, 0.8555, 0.3906, 0.8666),
    29: (0.2299, 0.9164, 0.2983, 0.8922),
    30: (0.2281, 0.9180, 0.3155, 0.8868),
}
_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def course_reference() -> dict[int, dict[str, float]]:
    """The course's Keras numbers for model A: {epoch (1-based): {loss, accuracy, val_loss, val_accuracy}}.

    Only epochs 1-4, 29 and 30 are listed in the course.
    """
    return {epoch: dict(zip(_KEYS, row, strict=True)) for epoch, row in _COURSE_A.items()}


def _check_name(name: str) -> str:
    key = str(name).upper()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")
    return key


def build_model(name: str, seed: int | None = None, dtype: str = "float32") -> Sequential:
    """Course model "A" or "B", built for (None, 28, 28) inputs, or "lenet" for (None, 28, 28, 1); not compiled."""
    key = _check_name(name)
    if key == "LENET":
        layers = [
            Conv2D(6, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)),
            MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
            Conv2D(16, (5, 5), padding="same", activation="relu"),
            MaxPool2D((2, 2), (2, 2)),
            Flatten(),
            Dense(120, activation="relu"),
            Dense(84, activation="relu"),
            Dense(10, activation="softmax"),
        ]
        return Sequential(layers, name="lenet", seed=seed, dtype=dtype)
    if key == "A":
        layers = [
            Flatten(input_shape=[28, 28]),
            Dense(300, activation="relu"),
            Dense(100, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    else:
        layers = [
            Flatten(input_shape=[28, 28]),
            Dense(128, activation="relu"),
            Dropout(0.2),
            Dense(10, activation="softmax"),
        ]
    return Sequential(layers, name=f"model_{key}", seed=seed, dtype=dtype)


def as_model_input(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Images (n, 28, 28) as the model takes them: (n, 28, 28, 1) for LeNet (a view, no copy)."""
    return x.reshape(x.shape[0], *(int(d) for d in model.input_shape[1:] if d is not None))


def make_optimizer(name: str, learning_rate: float) -> Optimizer:
    """ "sgd" | "adam" | "rmsprop" with the given learning rate (other settings as in Keras)."""
    table = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(table)}")
    return table[name](learning_rate=learning_rate)


def prepare_fashion_mnist(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    limit: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The course's split: pixels / 255 as float32; validation = the first 5,000 training images.

    train/test: (uint8 (n, 28, 28), int labels (n,)). `limit` keeps only the first `limit`
    images of the remaining 55,000 for training (quick runs). Returns {"train", "valid", "test"}:
    each (float32 (n, 28, 28) in [0, 1], int64 (n,)).
    """
    (x_full, y_full), (x_test, y_test) = train, test

    def scale(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) / np.float32(255.0)

    x_valid, y_valid = x_full[:N_VALIDATION], y_full[:N_VALIDATION]
    x_train, y_train = x_full[N_VALIDATION:], y_full[N_VALIDATION:]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of images, received {limit}")
        x_train, y_train = x_train[:limit], y_train[:limit]
    return {
        "train": (scale(x_train), y_train.astype(np.int64)),
        "valid": (scale(x_valid), y_valid.astype(np.int64)),
        "test": (scale(x_test), y_test.astype(np.int64)),
    }
