"""Keras's `PReLU` layer: a leaky relu whose slopes are learned."""

from __future__ import annotations

from typing import Any

from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from .base import Array, Layer, ParamSpec, Shape


class PReLU(Layer):
    """h = x for x ≥ 0, alpha·x otherwise, with a trainable alpha: (batch, ...) → the same shape.

    alpha has the input's feature shape, except that each axis in `shared_axes` (counted as
    Keras counts them, 1 being the first axis after the batch) has size 1 and shares one slope:
    for (batch, h, w, channels) images, shared_axes=[1, 2] learns one slope per channel.
    alpha_initializer defaults to zeros (a plain relu at first), as in Keras.
    """

    def __init__(
        self,
        alpha_initializer: str | inits.Initializer = "zeros",
        alpha_regularizer: str | regs.Regularizer | None = None,
        alpha_constraint: Any = None,
        shared_axes: int | list[int] | tuple[int, ...] | None = None,
        name: str | None = None,
        input_shape: Any = None,
        trainable: bool = True,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if alpha_constraint is not None:
            raise ValueError(f"PReLU alpha_constraint is not supported by xpnet, received {alpha_constraint!r}")
        axes = [] if shared_axes is None else [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
        if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in axes):
            raise ValueError(f"PReLU shared_axes must be axes >= 1 (0 is the batch axis), received {shared_axes!r}")
        self.shared_axes: list[int] | None = None if shared_axes is None else axes
        self.alpha_initializer = inits.get(alpha_initializer)
        self.alpha_regularizer = regs.get(alpha_regularizer)
        self._init_name = alpha_initializer if isinstance(alpha_initializer, str) else None
        self._x: Array = None
        self._sum_axes: tuple[int, ...] = (0,)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        for a in self.shared_axes or []:
            if a > len(input_shape):
                raise ValueError(
                    f"PReLU shared_axes {self.shared_axes} name axis {a}, but the inputs are "
                    f"(None, {', '.join(map(str, input_shape))})"
                )
        self._sum_axes = (0, *sorted(set(self.shared_axes or [])))
        return input_shape

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        shared = set(self.shared_axes or [])
        shape = tuple(1 if k + 1 in shared else d for k, d in enumerate(self.input_shape))
        return [ParamSpec("alpha", shape, self.alpha_initializer, self.alpha_regularizer)]

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        if training:
            self._x = x
        return xp.where(x >= 0, x, self.params["alpha"] * x)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        # ∂L/∂alpha = Σ over the batch and shared axes of dy·min(x, 0); ∂L/∂x = dy·(1 or alpha)
        assert self.ops is not None and self.sink is not None
        xp, x = self.ops.xp, self._x
        alpha = self.params["alpha"]
        dx = xp.where(x >= 0, dy, dy * alpha) if need_input_grad else None  # before the sink moves alpha
        g = xp.sum(dy * xp.minimum(x, 0.0), axis=self._sum_axes, keepdims=True)
        self.sink.put(self, "alpha", xp.reshape(g, alpha.shape))
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alpha_initializer": self._init_name or serialize(self.alpha_initializer),
            "alpha_regularizer": serialize(self.alpha_regularizer),
            "shared_axes": self.shared_axes,
        }

    def __repr__(self) -> str:
        return f"PReLU(shared_axes={self.shared_axes}, name={self.name!r})"
