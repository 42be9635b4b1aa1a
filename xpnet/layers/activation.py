from __future__ import annotations

from typing import Any

from .. import activations as acts
from ..io.config import serialize
from .base import Array, Layer


class Activation(Layer):
    """Applies φ elementwise: (batch, ...) → same shape."""

    def __init__(self, activation: str | acts.Activation, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)
        self.activation: acts.Activation = acts.get(activation)
        self._h: Array = None

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        h = self.activation.forward(self.ops.xp, x)
        self._u = x  # kept at inference too: the loss reads logits from it
        if training:
            self._h = h
        return h

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        self._u = x
        return x

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None
        if not need_input_grad:
            return None
        return self.ops.activation_backward(self.activation, self._u, self._h, dy)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        return du if need_input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "activation": serialize(self.activation)}

    def __repr__(self) -> str:
        return f"Activation({self.activation.name!r}, name={self.name!r})"
