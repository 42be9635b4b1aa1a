"""Keras's `keras.utils` helpers a course uses."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_categorical(y: Any, num_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """One-hot rows for integer class labels, as `keras.utils.to_categorical`.

    y: int labels of any shape (a trailing axis of size 1 is dropped); num_classes: defaults to
    max(y) + 1. Returns y.shape + (num_classes,) in `dtype`.
    """
    a = np.asarray(y)
    if a.dtype.kind == "f" and np.any(a != np.round(a)):
        raise ValueError("to_categorical: y must hold integer class labels, received non-integer values")
    if a.size and a.dtype.kind not in "biuf":
        raise TypeError(f"to_categorical: y must be integer class labels, received dtype {a.dtype}")
    labels = a.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, received {int(labels.min())}")
    n = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    if labels.size and labels.max() >= n:
        raise ValueError(f"to_categorical: label {int(labels.max())} is out of range for num_classes={n}")
    out = np.zeros((*labels.shape, n), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out
