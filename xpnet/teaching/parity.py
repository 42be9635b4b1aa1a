"""Train the same model on two backends from one seed and compare: the cross-device reproducibility check."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from ..layers import Dense, Dropout
from ..models.sequential import Sequential


def synthetic_fashion_like(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable stand-in for Fashion-MNIST.

    -> x (n, 784) float32 in [0, 1), y (n,) int labels from a random linear teacher.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    return x, np.argmax((x - 0.5) @ teacher, axis=1)


def model_b(seed: int) -> Sequential:
    """The course's exercise: Dense 128 relu → Dropout 0.2 → Dense 10 softmax (inputs already flat)."""
    return Sequential([Dense(128, "relu", input_shape=(784,)), Dropout(0.2), Dense(10, "softmax")], seed=seed)


def train_on(
    backend: str, x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 5, batch_size: int = 100
) -> dict[str, Any]:
    model = model_b(seed)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    dropout = cast(Dropout, model.layers[1])  # model_b's second layer
    assert model.ops is not None
    return {
        "weights": model.get_weights(),
        "loss": hist.history["loss"],
        "mask": model.ops.to_numpy(dropout.mask),
        "steps": dropout.iterations,
        "backend": model.ops.describe(),
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Max absolute and relative (Frobenius) weight differences, loss difference, and mask equality."""
    max_abs = max(float(np.max(np.abs(u - v))) for u, v in zip(a["weights"], b["weights"], strict=True))
    rel = max(float(np.linalg.norm(u - v) / np.linalg.norm(v)) for u, v in zip(a["weights"], b["weights"], strict=True))
    return {
        "max_abs_weight_diff": max_abs,
        "max_rel_weight_diff": rel,
        "max_loss_diff": float(np.max(np.abs(np.subtract(a["loss"], b["loss"])))),
        "masks_identical": float(a["steps"] == b["steps"] and np.array_equal(a["mask"], b["mask"])),
        "steps": float(a["steps"]),
    }
