from __future__ import annotations

import warnings
from typing import Any

from . import _spatial as sp
from .base import Array, Layer, Shape


class MaxPooling1D(Layer):
    """The largest value of each window of `pool_size` steps: (batch, steps, c) → (batch, out_steps, c).

    padding="valid": out = floor((steps − pool_size) / strides) + 1 (trailing steps that fill no window
    are dropped, with a warning); "same": out = ceil(steps / strides), the border windows over their real
    steps only. strides defaults to pool_size. Runs the backend's 2-D max pool on (batch, 1, steps, c);
    backward sends each window's gradient to its first maximum.
    """

    def __init__(
        self,
        pool_size: int | tuple[int] = 2,
        strides: int | tuple[int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        owner = "MaxPooling1D"
        self.pool_size = sp.single(pool_size, "pool_size", owner)
        self.strides = sp.single(strides, "strides", owner) if strides is not None else self.pool_size
        self.padding = sp.padding_arg(padding, owner)
        sp.channels_last(data_format, owner)
        self.pads: sp.Pads = (0, 0, 0, 0)
        self._arg: Array = None

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        owner = f"MaxPooling1D {self.name!r}"
        steps, c = sp.sequence_shape(input_shape, owner)
        out, before, after = sp.out_and_pads(steps, self.pool_size, self.strides, self.padding)
        if out <= 0:
            raise ValueError(
                f"{owner}: the pool of {self.pool_size} steps does not fit the {steps} input steps with "
                "padding='valid'; use padding='same', a smaller pool_size, or fewer pooling/strided layers before"
            )
        self.pads = (0, 0, before, after)
        lost = steps - ((out - 1) * self.strides + self.pool_size - before - after)
        if lost > 0:
            warnings.warn(
                f"{owner}: windows of {self.pool_size} steps with strides {self.strides} leave the last {lost} "
                f"step(s) of the {steps} input steps outside every window; as in Keras they are ignored "
                f"(output {out} steps). Use padding='same' to keep them",
                UserWarning,
                stacklevel=2,
            )
        return (out, c)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        n, steps, c = x.shape
        y, arg = self.ops.max_pool_forward(
            xp.reshape(x, (n, 1, steps, c)), (1, self.pool_size), (1, self.strides), self.pads, need_arg=training
        )
        self._arg = arg if training else None
        return xp.reshape(y, (n, y.shape[2], c))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        xp = self.ops.xp
        n, out, c = dy.shape
        steps = self.input_shape[0]
        dx = self.ops.max_pool_backward(
            xp.reshape(dy, (n, 1, out, c)),
            self._arg,
            (n, 1, steps, c),
            (1, self.pool_size),
            (1, self.strides),
            self.pads,
        )
        return xp.reshape(dx, (n, steps, c))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "pool_size": (self.pool_size,), "strides": (self.strides,), "padding": self.padding}

    def __repr__(self) -> str:
        return (
            f"MaxPooling1D(pool_size={self.pool_size}, strides={self.strides}, padding={self.padding!r}, "
            f"name={self.name!r})"
        )


MaxPool1D = MaxPooling1D
