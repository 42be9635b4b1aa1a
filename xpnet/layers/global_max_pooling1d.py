from __future__ import annotations

from typing import Any

from ._global_pooling import GlobalPooling
from .base import Array
from .global_max_pooling2d import global_max_backward


class GlobalMaxPooling1D(GlobalPooling):
    """The largest value over the steps: (batch, steps, c) → (batch, c), or (batch, 1, c) with keepdims.

    Backward: each channel's ∂L/∂y goes to the step that holds its maximum (split equally among ties).
    """

    rank = 1

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, name: str | None = None, input_shape: Any = None
    ) -> None:
        super().__init__(data_format, keepdims, name, input_shape)
        self._x: Array = None
        self._y: Array = None

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        y = self.ops.xp.max(x, axis=1, keepdims=True)
        if training:
            self._x, self._y = x, y
        return y if self.keepdims else self.ops.xp.reshape(y, (x.shape[0], x.shape[-1]))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None
        return global_max_backward(self.ops.xp, self._x, self._y, dy, self.axes)


GlobalMaxPool1D = GlobalMaxPooling1D
