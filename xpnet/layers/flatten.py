from __future__ import annotations

from typing import Any

import numpy as np

from .base import Array, Layer, Shape


class Flatten(Layer):
    """(batch, d1, d2, ...) → (batch, d1·d2·...)."""

    identity_at_inference = True  # on rows that are already flat, or as the first layer of an affine chain

    def __init__(self, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None and self.output_shape is not None
        return self.ops.xp.reshape(x, (x.shape[0], self.output_shape[0]))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None and self.input_shape is not None
        return self.ops.xp.reshape(dy, (dy.shape[0], *self.input_shape)) if need_input_grad else None

    def __repr__(self) -> str:
        return f"Flatten(name={self.name!r})"
