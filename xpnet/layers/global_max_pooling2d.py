from __future__ import annotations

from typing import Any

from ._global_pooling import GlobalPooling
from .base import Array


class GlobalMaxPooling2D(GlobalPooling):
    """The largest value over height and width: (batch, h, w, c) → (batch, c), or (batch, 1, 1, c) with keepdims.

    Backward: each channel's ∂L/∂y goes to the pixel that holds its maximum; where several pixels tie,
    it is split equally among them (TensorFlow's rule for reduce_max).
    """

    rank = 2

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, name: str | None = None, input_shape: Any = None
    ) -> None:
        super().__init__(data_format, keepdims, name, input_shape)
        self._x: Array = None
        self._y: Array = None

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        y = self.ops.xp.max(x, axis=self.axes, keepdims=True)
        if training:
            self._x, self._y = x, y
        return y if self.keepdims else self.ops.xp.reshape(y, (x.shape[0], x.shape[-1]))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None
        return global_max_backward(self.ops.xp, self._x, self._y, dy, self.axes)


def global_max_backward(xp: Any, x: Array, y: Array, dy: Array, axes: tuple[int, ...]) -> Array:
    """∂L/∂x of y = max of x over `axes` (y kept with those axes as 1): dy shared by the elements equal to y."""
    hit = xp.astype(x == y, x.dtype)
    share = xp.reshape(dy, y.shape) / xp.sum(hit, axis=axes, keepdims=True)
    return hit * share


GlobalMaxPool2D = GlobalMaxPooling2D
