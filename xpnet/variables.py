"""`Variable`: a light handle on one weight of a built model, as Keras 3's `layer.weights` hands out.

The values stay in the model's flat parameter store (xpnet/params.py); a Variable only names a
layer's view of it, so `numpy()` is a copy to the host and `assign()` writes through the view.
A weight's trainability is read from its layer at the time of asking (Keras's `trainable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .backend.values import is_numeric, weight_source, write_weight

if TYPE_CHECKING:
    from .params import Layer, ParamSpec


class Variable:
    """One weight: `.name` ("kernel"), `.path` ("dense/kernel"), `.shape`, `.dtype`, `.trainable`,
    `.value` (the device view), `.numpy()` (a host copy) and `.assign(value)`."""

    def __init__(self, layer: Layer, spec: ParamSpec) -> None:
        self._layer, self._spec = layer, spec
        # what a recording knows this weight by, however many Variables name it
        self.key = (id(layer), spec.name)

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def layer(self) -> Layer:
        """The layer whose weight this is."""
        return self._layer

    @property
    def path(self) -> str:
        return f"{self._layer.name}/{self._spec.name}"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._spec.shape)

    @property
    def dtype(self) -> str:
        return str(self.value.dtype).split(".")[-1]

    @property
    def trainable(self) -> bool:
        """Whether the optimizer trains it (after the next compile when the layer's flag just changed)."""
        return bool(self._layer.trainable and self._spec.trainable)

    @property
    def regularizer(self) -> Any:
        return self._spec.regularizer

    @property
    def value(self) -> Any:
        """The weight's view into the model's parameter buffer, on the model's device."""
        view = self._layer.params.get(self._spec.name)
        if view is None:
            raise RuntimeError(f"{self.path} is not bound to a model any more (the layer was rebuilt or removed)")
        return view

    def numpy(self) -> np.ndarray:
        ops = self._layer.ops
        assert ops is not None
        return np.array(ops.to_numpy(self.value), copy=True)

    def assign(self, value: Any) -> None:
        """Overwrite the weight in place; the shape must match (NaN and inf are taken, as Keras takes them)."""
        ops = self._layer.ops
        assert ops is not None
        # a device array of the model's backend is written as it is, device to device; a Variable of
        # another backend or device is read through its own backend (its array may refuse np.asarray)
        if isinstance(value, Variable):
            value = value.value if ops.is_native(value.value) else value.numpy()
        a = weight_source(ops, value)
        if tuple(a.shape) != self.shape:
            raise ValueError(f"{self.path}.assign: expected shape {self.shape}, received {tuple(a.shape)}")
        if not is_numeric(a):
            raise ValueError(f"{self.path}.assign: expected numbers, received dtype {a.dtype}")
        write_weight(ops, self.value, a)
        self._layer.weights_assigned()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, trainable={self.trainable}>"
