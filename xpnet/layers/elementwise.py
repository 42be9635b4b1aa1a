"""Parameter-free elementwise layers from Keras: LeakyReLU and Rescaling."""

from __future__ import annotations

from typing import Any

from .. import activations as acts
from .activation import Activation
from .base import Array, Layer


class LeakyReLU(Activation):
    """h = u for u > 0, negative_slope·u otherwise (Keras's layer default: 0.3)."""

    def __init__(self, negative_slope: float = 0.3, name: str | None = None, input_shape: Any = None) -> None:
        if not negative_slope >= 0:
            raise ValueError(f"LeakyReLU negative_slope must be >= 0, received {negative_slope}")
        super().__init__(acts.LeakyReLU(negative_slope), name=name, input_shape=input_shape)
        self.negative_slope = float(negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "negative_slope": self.negative_slope}

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope}, name={self.name!r})"


class Rescaling(Layer):
    """h = x·scale + offset, e.g. Rescaling(1 / 255) for pixels; the same shape out."""

    def __init__(self, scale: float, offset: float = 0.0, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: Array, training: bool = False) -> Array:
        return x * self.scale + self.offset if self.offset else x * self.scale

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        return dy * self.scale if need_input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "offset": self.offset}

    def __repr__(self) -> str:
        return f"Rescaling(scale={self.scale}, offset={self.offset}, name={self.name!r})"
