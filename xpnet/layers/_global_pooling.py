"""What the global pooling layers share: the arguments, the shape checks and the output shape.

A global pooling layer reduces every axis between the batch and the channels:
(batch, steps, c) or (batch, h, w, c) → (batch, c), or with keepdims (batch, 1, c) / (batch, 1, 1, c).
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import _spatial as sp
from .base import Layer, Shape


class GlobalPooling(Layer):
    """Base of the global pooling layers; `rank` is 1 for sequences, 2 for images."""

    rank: ClassVar[int] = 2

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, name: str | None = None, input_shape: Any = None
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        sp.channels_last(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    @property
    def axes(self) -> tuple[int, ...]:
        """The reduced axes of a batch: 1 (steps) or 1, 2 (height, width)."""
        return tuple(range(1, self.rank + 1))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        owner = f"{type(self).__name__} {self.name!r}"
        if self.rank == 1:
            _, c = sp.sequence_shape(input_shape, owner)
        else:
            _, _, c = sp.image_shape(input_shape, owner)
        return (*(1,) * self.rank, c) if self.keepdims else (c,)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "keepdims": self.keepdims}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keepdims={self.keepdims}, name={self.name!r})"
