from __future__ import annotations

from typing import Any

from . import _spatial as sp
from .base import Array, Layer, Shape


class UpSampling2D(Layer):
    """Each pixel repeated size[0] times down and size[1] times across (nearest neighbour), channels-last.

    x: (batch, h, w, c) → (batch, h·size[0], w·size[1], c). Backward sums ∂L/∂y over each pixel's block.
    Only interpolation="nearest" is supported.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = (2, 2),
        data_format: str | None = None,
        interpolation: str = "nearest",
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        owner = "UpSampling2D"
        self.size = sp.pair(size, "size", owner)
        sp.channels_last(data_format, owner)
        if interpolation != "nearest":
            raise NotImplementedError(
                f"{owner}: only interpolation='nearest' is supported, received interpolation={interpolation!r}"
            )
        self.interpolation = interpolation

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = sp.image_shape(input_shape, f"UpSampling2D {self.name!r}")
        return (h * self.size[0], w * self.size[1], c)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        n, h, w, c = x.shape
        (sh, sw) = self.size
        blocks = xp.broadcast_to(xp.reshape(x, (n, h, 1, w, 1, c)), (n, h, sh, w, sw, c))
        return xp.reshape(blocks, (n, h * sh, w * sw, c))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        xp = self.ops.xp
        h, w, c = self.input_shape
        (sh, sw) = self.size
        return xp.sum(xp.reshape(dy, (dy.shape[0], h, sh, w, sw, c)), axis=(2, 4))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return f"UpSampling2D(size={self.size}, interpolation={self.interpolation!r}, name={self.name!r})"
