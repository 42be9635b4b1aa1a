"""Layer protocol shared by every layer.

A layer is built from its input shape (without the batch axis), declares its parameters as
`ParamSpec`s, and is then bound to views into the model's flat parameter and gradient
buffers. `forward` caches what `backward` needs; `backward` writes parameter gradients into
the bound views and returns the gradient with respect to its input (or None when the model
says nobody needs it, e.g. for the first layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import initializers as inits
from ..backend import Ops
from ..regularizers import Regularizer

Array = Any
Shape = tuple[int, ...]


@dataclass
class ParamSpec:
    name: str
    shape: Shape
    initializer: inits.Initializer
    regularizer: Regularizer | None = None


class Layer:
    def __init__(self, name: str | None = None, input_shape: Any = None) -> None:
        self.name = name
        self.requested_input_shape: Shape | None = _as_shape(input_shape) if input_shape is not None else None
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.ops: Ops | None = None
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.index = 0

    @property
    def default_name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def build(self, input_shape: Shape) -> Shape:
        """Record the input shape (no batch axis) and return the output shape."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_specs(self) -> list[ParamSpec]:
        return []

    def bind(self, ops: Ops, params: dict[str, Array], grads: dict[str, Array]) -> None:
        self.ops, self.params, self.grads = ops, params, grads

    @property
    def built(self) -> bool:
        return self.output_shape is not None

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        raise NotImplementedError

    def count_params(self) -> int:
        return sum(int(np.prod(s.shape)) for s in self.param_specs()) if self.built else 0

    def get_weights(self) -> list[np.ndarray]:
        """Copies of this layer's parameters on the host, e.g. [kernel (in, out), bias (out,)]."""
        if self.ops is None:
            return []
        return [self.ops.to_numpy(self.params[s.name]).copy() for s in self.param_specs()]

    def set_weights(self, weights: list[Any]) -> None:
        specs = self.param_specs()
        if self.ops is None:
            raise RuntimeError(f"layer {self.name!r} is not built yet; build the model first")
        if len(weights) != len(specs):
            raise ValueError(f"layer {self.name!r} expects {len(specs)} weight arrays, received {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for s, w in zip(specs, arrays, strict=True):
            if w.shape != s.shape:
                raise ValueError(f"layer {self.name!r}: {s.name} must have shape {s.shape}, received {w.shape}")
        for s, w in zip(specs, arrays, strict=True):
            view = self.params[s.name]
            view[...] = self.ops.asarray(w.astype(_host_dtype(view)))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"


def _host_dtype(a: Array) -> np.dtype:
    return np.dtype(str(a.dtype).split(".")[-1])


def _as_shape(shape: Any) -> Shape:
    if isinstance(shape, int):
        return (shape,)
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"input shape must be positive integers (without the batch axis), received {shape}")
    return tuple(int(d) for d in shape)
