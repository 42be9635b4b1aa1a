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


class PyDataset:
    """Batches computed in Python, as `keras.utils.PyDataset`: subclass it, call
    `super().__init__(**kwargs)`, and define `__len__` (the number of batches per epoch) and
    `__getitem__(index)` returning `(x, y)` or `(x, y, sample_weight)` NumPy batches (`x` alone
    for predict).

    `fit`, `evaluate` and `predict` take it in place of arrays and stream its batches through
    fixed device buffers, for data that does not fit in memory; `on_epoch_begin`/`on_epoch_end`
    run around each epoch (shuffle there). `workers`, `use_multiprocessing` and `max_queue_size`
    are accepted for Keras code and recorded; batches are read in the calling thread.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10) -> None:
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PyDataset: {name} must be a positive integer, received {value!r}")
        self._workers, self._use_multiprocessing, self._max_queue_size = (
            workers,
            bool(use_multiprocessing),
            max_queue_size,
        )

    @property
    def workers(self) -> int:
        return int(getattr(self, "_workers", 1))

    @property
    def use_multiprocessing(self) -> bool:
        return bool(getattr(self, "_use_multiprocessing", False))

    @property
    def max_queue_size(self) -> int:
        return int(getattr(self, "_max_queue_size", 10))

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning one batch")

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch: `len(self)`, or None when the subclass defines no `__len__`."""
        if type(self).__len__ is PyDataset.__len__:
            return None
        return len(self)

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} defines no __len__")

    def on_epoch_begin(self) -> None:
        """Called before each epoch's first batch."""

    def on_epoch_end(self) -> None:
        """Called after each epoch's last batch (shuffle the order here)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} batches={self.num_batches}>"
