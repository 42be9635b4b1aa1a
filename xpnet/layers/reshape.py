from __future__ import annotations

import math
from typing import Any

from .base import Array, Layer, Shape


class Reshape(Layer):
    """(batch, *input_shape) → (batch, *target_shape); one entry of target_shape may be -1 (inferred)."""

    def __init__(self, target_shape: Any, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)
        shape = (target_shape,) if isinstance(target_shape, int) else tuple(target_shape)
        if (
            not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape)
            or shape.count(-1) > 1
        ):
            raise ValueError(
                f"Reshape: target_shape must be positive integers (at most one -1, without the batch axis), "
                f"received {target_shape!r}"
            )
        self.target_shape: tuple[int, ...] = shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        size, known = math.prod(input_shape), math.prod(d for d in self.target_shape if d != -1)
        shape = self.target_shape
        if -1 in shape and size % known == 0:
            shape = tuple(size // known if d == -1 else d for d in shape)
        if math.prod(shape) != size:
            raise ValueError(
                f"Reshape {self.name!r}: cannot reshape an input of shape (None, {', '.join(map(str, input_shape))}) "
                f"({size} values per sample) to (None, {', '.join(map(str, self.target_shape))})"
            )
        return shape

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None and self.output_shape is not None
        return self.ops.xp.reshape(x, (x.shape[0], *self.output_shape))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None and self.input_shape is not None
        return self.ops.xp.reshape(dy, (dy.shape[0], *self.input_shape)) if need_input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "target_shape": self.target_shape}

    def __repr__(self) -> str:
        return f"Reshape({self.target_shape}, name={self.name!r})"
