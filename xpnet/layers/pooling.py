from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import activations as acts
from . import _spatial as sp
from .base import Array, Layer, Shape


class _Pooling2D(Layer):
    """Shared arguments and geometry: pool_size, strides (default: pool_size), padding, channels-last."""

    def __init__(
        self,
        pool_size: int | tuple[int, int] = (2, 2),
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        owner = type(self).__name__
        self.pool_size = sp.pair(pool_size, "pool_size", owner)
        self.strides = sp.pair(strides, "strides", owner) if strides is not None else self.pool_size
        self.padding = sp.padding_arg(padding, owner)
        sp.channels_last(data_format, owner)
        self.pads: sp.Pads = (0, 0, 0, 0)

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        owner = f"{type(self).__name__} {self.name!r}"
        h, w, c = sp.image_shape(input_shape, owner)
        out, self.pads = sp.geometry((h, w), self.pool_size, self.strides, self.padding, owner, what="pool")
        lost = sp.dropped((h, w), self.pool_size, self.strides, out, self.pads)
        if any(lost):
            parts = [f"{k} {what}" for k, what in zip(lost, ("row(s)", "column(s)"), strict=True) if k]
            warnings.warn(
                f"{owner}: {self.pool_size[0]}×{self.pool_size[1]} windows with strides {self.strides} leave the last "
                f"{' and '.join(parts)} of the {h}×{w} input outside every window; as in Keras they are ignored "
                f"(output {out[0]}×{out[1]}). Use padding='same' to keep them",
                UserWarning,
                stacklevel=2,
            )
        return (*out, c)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(pool_size={self.pool_size}, strides={self.strides}, "
            f"padding={self.padding!r}, name={self.name!r})"
        )


class MaxPooling2D(_Pooling2D):
    """The largest value of each window: (batch, h, w, c) → (batch, out_h, out_w, c).

    Backward sends each window's gradient to its first maximum (the argmax kept from forward).
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = (2, 2),
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(pool_size, strides, padding, data_format, name, input_shape)
        self._arg: Array = None

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        y, arg = self.ops.max_pool_forward(x, self.pool_size, self.strides, self.pads, need_arg=training)
        self._arg = arg if training else None
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        x_shape = (dy.shape[0], *self.input_shape)
        return self.ops.max_pool_backward(dy, self._arg, x_shape, self.pool_size, self.strides, self.pads)

    def forward_relu_after(self, x: Array, training: bool = False) -> Array:
        """relu(maxpool(u)) for u, the pre-activation of a relu layer below: equal to maxpool(relu(u)) bit for
        bit on 4× fewer elements for 2×2 windows (training/plan.py says when the model runs it)."""
        assert self.ops is not None
        y, arg = self.ops.max_pool_relu_forward(x, self.pool_size, self.strides, self.pads, _RELU, training)
        self._arg = arg if training else None
        return y

    def backward_relu_after(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        """∂L/∂u of `forward_relu_after`: each window's gradient to its argmax where the maximum is > 0 (relu'
        there is the mask the relu below would apply), nothing elsewhere."""
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        x_shape = (dy.shape[0], *self.input_shape)
        return self.ops.max_pool_relu_backward(dy, self._arg, x_shape, self.pool_size, self.strides, self.pads, _RELU)


class AveragePooling2D(_Pooling2D):
    """The mean of each window: (batch, h, w, c) → (batch, out_h, out_w, c).

    With padding="same", border windows average over their pixels inside the image (as Keras).
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = (2, 2),
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(pool_size, strides, padding, data_format, name, input_shape)
        self._inv: Any = None  # ((id of the Ops, dtype), 1 / pixels per window on that device)

    def _inv_count(self, x: Array) -> Array | float:
        """1 / (window pixels inside the image): a float, or (out_h, out_w, 1) like x on the device for "same"."""
        assert self.ops is not None and self.output_shape is not None and self.input_shape is not None
        if not any(self.pads):
            return 1.0 / (self.pool_size[0] * self.pool_size[1])
        key = (id(self.ops), str(x.dtype))
        if self._inv is None or self._inv[0] != key:  # computed on the host once, uploaded once
            per_axis = []
            for axis in range(2):
                start = np.arange(self.output_shape[axis]) * self.strides[axis] - self.pads[2 * axis]
                stop = np.minimum(start + self.pool_size[axis], self.input_shape[axis])
                per_axis.append(stop - np.maximum(start, 0))
            inv = 1.0 / np.outer(per_axis[0], per_axis[1])[:, :, None]
            self._inv = (key, self.ops.asarray(inv.astype(str(x.dtype).split(".")[-1])))
        return self._inv[1]

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        return self.ops.avg_pool_forward(x, self.pool_size, self.strides, self.pads, self._inv_count(x))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        x_shape = (dy.shape[0], *self.input_shape)
        return self.ops.avg_pool_backward(dy, x_shape, self.pool_size, self.strides, self.pads, self._inv_count(dy))


class GlobalAveragePooling2D(Layer):
    """The mean over height and width: (batch, h, w, c) → (batch, c), or (batch, 1, 1, c) with keepdims."""

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, name: str | None = None, input_shape: Any = None
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        sp.channels_last(data_format, "GlobalAveragePooling2D")
        self.keepdims = bool(keepdims)

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _, _, c = sp.image_shape(input_shape, f"GlobalAveragePooling2D {self.name!r}")
        return (1, 1, c) if self.keepdims else (c,)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        return self.ops.xp.mean(x, axis=(1, 2), keepdims=self.keepdims)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None and self.input_shape is not None
        h, w, c = self.input_shape
        share = self.ops.xp.reshape(dy, (dy.shape[0], 1, 1, c)) * (1.0 / (h * w))
        return self.ops.zeros((dy.shape[0], h, w, c), dy.dtype) + share

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "keepdims": self.keepdims}

    def __repr__(self) -> str:
        return f"GlobalAveragePooling2D(keepdims={self.keepdims}, name={self.name!r})"


_RELU = acts.get("relu")

MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
