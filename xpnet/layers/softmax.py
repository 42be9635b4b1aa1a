"""Keras's `Softmax` layer: a softmax over one or more feature axes."""

from __future__ import annotations

from typing import Any

from .base import Array, Layer, Shape


class Softmax(Layer):
    """h = exp(x − max) / Σ exp(x − max) along `axis`: (batch, ...) → the same shape and dtype.

    axis: an int or a tuple of ints counted as Keras counts them, over the full shape with the
    batch axis first (-1, the default, is the last feature axis); the batch axis itself cannot be
    normalized over, since each sample's output must depend on that sample only.
    """

    def __init__(
        self, axis: int | tuple[int, ...] | list[int] = -1, name: str | None = None, input_shape: Any = None
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        given = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        if not given or not all(isinstance(a, int) and not isinstance(a, bool) for a in given):
            raise ValueError(f"Softmax axis must be an int or a tuple of ints, received {axis!r}")
        self.axis: int | tuple[int, ...] = given if isinstance(axis, (list, tuple)) else given[0]
        self._axes: tuple[int, ...] = ()
        self._h: Array = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        ndim = len(input_shape) + 1
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        resolved = []
        for a in axes:
            k = a + ndim if a < 0 else a
            if not 1 <= k < ndim:
                raise ValueError(
                    f"Softmax axis {a} is out of range for inputs of shape (None, {', '.join(map(str, input_shape))})"
                    + ("; axis 0 is the batch axis" if k == 0 else "")
                )
            resolved.append(k)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"Softmax axis {self.axis!r} names the same axis twice")
        self._axes = tuple(sorted(resolved))
        return input_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        e = xp.exp(x - xp.max(x, axis=self._axes, keepdims=True))
        h = e / xp.sum(e, axis=self._axes, keepdims=True)
        self._h = h
        return h

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        # ∂L/∂x = h ⊙ (dy − Σ_axis dy ⊙ h)
        if not need_input_grad:
            return None
        assert self.ops is not None
        h = self._h
        return h * (dy - self.ops.xp.sum(dy * h, axis=self._axes, keepdims=True))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "axis": list(self.axis) if isinstance(self.axis, tuple) else self.axis}

    def __repr__(self) -> str:
        return f"Softmax(axis={self.axis!r}, name={self.name!r})"
