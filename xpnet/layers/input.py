from __future__ import annotations

from typing import Any

import numpy as np

from .base import _as_shape
from .node import KerasTensor


class Input(KerasTensor):
    """The model's input: `Input(shape=(28, 28))`, shape without the batch axis.

    It is a symbolic tensor (`.shape` is (None, 28, 28)) that layers can be called on to build a
    functional `Model`, and the first entry of a `Sequential([...])` list to declare its input shape.
    As Keras: `Input(batch_shape=(None, 28, 28))` gives the shape with the batch axis (a fixed
    batch size is recorded in `.shape` but batches of any size are accepted), and `.dtype`
    is the input's dtype ("float32" unless given).
    """

    def __init__(
        self,
        shape: Any = None,
        batch_size: int | None = None,
        dtype: str | None = None,
        sparse: bool | None = None,
        batch_shape: Any = None,
        name: str | None = None,
        tensor: Any = None,
    ) -> None:
        if sparse:
            raise ValueError("Input(sparse=True): xpnet has no sparse tensors; pass dense arrays")
        if tensor is not None:
            raise ValueError("Input(tensor=...): xpnet inputs are symbolic only; pass shape= instead")
        if batch_shape is not None:
            if shape is not None:
                raise ValueError(f"Input: pass shape or batch_shape, not both (received {shape!r} and {batch_shape!r})")
            if not isinstance(batch_shape, (tuple, list)) or len(batch_shape) < 2:
                raise ValueError(f"Input: batch_shape must be (batch, *features), received {batch_shape!r}")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is None:
            raise ValueError("Input needs shape=(features...) (without the batch axis) or batch_shape=")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"Input: batch_size must be a positive integer or None, received {batch_size!r}")
        dt = np.dtype(dtype or "float32")
        if dt.kind not in "fiub":
            raise ValueError(f"Input: dtype must be a float, integer or bool type, received {dtype!r}")
        super().__init__(_as_shape(shape), None, name)
        self.batch_size = batch_size
        self._dtype = dt.name

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def shape(self) -> tuple[int | None, ...]:
        return (self.batch_size, *self.feature_shape)

    def __repr__(self) -> str:
        return f"Input(shape={self.feature_shape}, name={self.name!r})"
