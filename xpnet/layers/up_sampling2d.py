from __future__ import annotations

from typing import Any

import numpy as np

from . import _spatial as sp
from .base import Array, Layer, Shape


class UpSampling2D(Layer):
    """Each image enlarged size[0] times down and size[1] times across, channels-last.

    x: (batch, h, w, c) → (batch, h·size[0], w·size[1], c).
    interpolation="nearest" repeats each pixel over a size[0]×size[1] block; backward sums ∂L/∂y
    over the block. "bilinear" interpolates as Keras does (half-pixel centres, the border pixels
    repeated): a linear map per axis, y = A_h · x · A_wᵀ with A (out, in) built on the host once,
    so backward is x̄ = A_hᵀ · ȳ · A_w.
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
        if interpolation not in ("nearest", "bilinear"):
            raise NotImplementedError(
                f"{owner}: interpolation must be 'nearest' or 'bilinear', received interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        self._maps: Any = None  # ((id of the Ops, dtype), A_h, A_w on that device)

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = sp.image_shape(input_shape, f"UpSampling2D {self.name!r}")
        return (h * self.size[0], w * self.size[1], c)

    def _bilinear_maps(self, like: Array) -> tuple[Array, Array]:
        """A_h (h·s_h, h) and A_w (w·s_w, w) in like's dtype on the layer's device, uploaded once."""
        assert self.ops is not None and self.input_shape is not None
        key = (id(self.ops), str(like.dtype))
        if self._maps is None or self._maps[0] != key:
            dtype = np.dtype(str(like.dtype).split(".")[-1])
            sides = zip(self.input_shape[:2], self.size, strict=True)
            maps = [self.ops.asarray(bilinear_matrix(n, s).astype(dtype)) for n, s in sides]
            self._maps = (key, *maps)
        return self._maps[1], self._maps[2]

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        n, h, w, c = x.shape
        (sh, sw) = self.size
        if self.interpolation == "bilinear":
            a_h, a_w = self._bilinear_maps(x)
            rows = xp.matmul(a_h, xp.reshape(x, (n, h, w * c)))  # (n, H, w·c)
            return xp.reshape(xp.matmul(a_w, xp.reshape(rows, (n * h * sh, w, c))), (n, h * sh, w * sw, c))
        blocks = xp.broadcast_to(xp.reshape(x, (n, h, 1, w, 1, c)), (n, h, sh, w, sw, c))
        return xp.reshape(blocks, (n, h * sh, w * sw, c))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        xp = self.ops.xp
        n = dy.shape[0]
        h, w, c = self.input_shape
        (sh, sw) = self.size
        if self.interpolation == "bilinear":
            a_h, a_w = self._bilinear_maps(dy)
            cols = xp.matmul(a_w.T, xp.reshape(dy, (n * h * sh, w * sw, c)))  # (n·H, w, c)
            return xp.reshape(xp.matmul(a_h.T, xp.reshape(cols, (n, h * sh, w * c))), (n, h, w, c))
        return xp.sum(xp.reshape(dy, (n, h, sh, w, sw, c)), axis=(2, 4))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return f"UpSampling2D(size={self.size}, interpolation={self.interpolation!r}, name={self.name!r})"


def bilinear_matrix(size: int, factor: int) -> np.ndarray:
    """A (size·factor, size) float64: output i reads input position (i + ½)/factor − ½, clamped at the borders."""
    a = np.zeros((size * factor, size))
    for i in range(size * factor):
        src = min(max((i + 0.5) / factor - 0.5, 0.0), size - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, size - 1)
        a[i, lo] += 1.0 - (src - lo)
        a[i, hi] += src - lo
    return a
