from __future__ import annotations

from ._global_pooling import GlobalPooling
from .base import Array


class GlobalAveragePooling1D(GlobalPooling):
    """The mean over the steps: (batch, steps, c) → (batch, c), or (batch, 1, c) with keepdims.

    Backward spreads ∂L/∂y / steps over every step.
    """

    rank = 1

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        return self.ops.xp.mean(x, axis=1, keepdims=self.keepdims)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        steps, c = self.input_shape
        share = self.ops.xp.reshape(dy, (dy.shape[0], 1, c)) * (1.0 / steps)
        return self.ops.zeros((dy.shape[0], steps, c), dy.dtype) + share


GlobalAvgPool1D = GlobalAveragePooling1D
