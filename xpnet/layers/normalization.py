"""Normalization (Keras's preprocessing layer): y = (x − mean)/max(√variance, 1e-7), statistics from
`adapt(data)` or given."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers as inits
from .base import Array, Layer, ParamSpec, Shape

EPSILON = 1e-7  # Keras's backend.epsilon(), the floor under √variance


class _Values(inits.Initializer):
    """The statistics `adapt` computed before the model was built (zeros/ones stand-ins otherwise)."""

    def __init__(self, layer: Normalization, which: int) -> None:
        self.layer, self.which = layer, which

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        found = self.layer.adapted_values
        if found is not None:
            return np.broadcast_to(found[self.which], shape)
        return np.zeros(shape) if self.which == 0 else np.ones(shape)


class Normalization(Layer):
    """Feature-wise standardisation: y = (x − mean)/max(√variance, 1e-7) (invert=True: the inverse).

    axis: the axis (or axes) that keep their own statistics, Keras-style counting the batch axis
    (-1: the last, per feature); None: one mean and variance over everything.
    mean, variance: given statistics (numbers or arrays broadcastable to the kept axes); then the
    layer has no weights. Otherwise `adapt(data)` computes them (the mean and the biased variance
    over every other axis) into two non-trainable weights, "mean" and "variance", which
    get_weights, save and load carry. Using the layer before either raises.
    """

    def __init__(
        self,
        axis: int | tuple[int, ...] | list[int] | None = -1,
        mean: Any = None,
        variance: Any = None,
        invert: bool = False,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape)
        if axis is None:
            self.axis: tuple[int, ...] = ()
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = (axis,)
        elif isinstance(axis, (tuple, list)) and all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            self.axis = tuple(axis)
        else:
            raise TypeError(f"Normalization axis must be an int, a tuple of ints or None, received {axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError(
                f"Normalization needs both mean and variance, or neither (then call adapt()); "
                f"received mean={mean!r}, variance={variance!r}"
            )
        self.input_mean = None if mean is None else _numbers(mean, "mean")
        self.input_variance = None if variance is None else _numbers(variance, "variance")
        if self.input_variance is not None and np.any(self.input_variance < 0):
            raise ValueError(f"Normalization variance must be >= 0, received {variance!r}")
        self.invert = bool(invert)
        self.adapted = False
        self.adapted_values: tuple[np.ndarray, np.ndarray] | None = None
        self._given: tuple[Array, Array] | None = None  # the given statistics on the device, broadcast-shaped
        self._denom: Array = None

    def _keep(self, rank: int) -> tuple[int, ...]:
        """The kept axes as positive indices into (batch, *input_shape)."""
        keep = []
        for a in self.axis:
            k = a + rank if a < 0 else a
            if not 0 < k < rank:
                raise ValueError(
                    f"Normalization {self.name!r}: axis {a} is not a feature axis of inputs with {rank} axes "
                    "(the batch axis, 0, cannot keep its own statistics)"
                )
            keep.append(k)
        return tuple(sorted(set(keep)))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        self._keep(len(input_shape) + 1)
        return input_shape

    def _stat_shape(self) -> Shape:
        assert self.input_shape is not None
        return tuple(self.input_shape[k - 1] for k in self._keep(len(self.input_shape) + 1))

    def _broadcast_shape(self) -> Shape:
        assert self.input_shape is not None
        keep = self._keep(len(self.input_shape) + 1)
        return (1, *(d if i + 1 in keep else 1 for i, d in enumerate(self.input_shape)))

    def param_specs(self) -> list[ParamSpec]:
        if self.input_mean is not None:
            return []
        shape = self._stat_shape()
        return [
            ParamSpec("mean", shape, _Values(self, 0), trainable=False),
            ParamSpec("variance", shape, _Values(self, 1), trainable=False),
        ]

    def bind(self, ops: Any, params: dict[str, Array], grads: dict[str, Array]) -> None:
        super().bind(ops, params, grads)
        if self.input_mean is not None and self.input_variance is not None:
            # given statistics are uploaded once here, in the model's dtype, never inside a step
            bshape = self._broadcast_shape()
            try:
                mean = np.broadcast_to(self._aligned(self.input_mean), bshape)
                var = np.broadcast_to(self._aligned(self.input_variance), bshape)
            except ValueError as e:
                raise ValueError(
                    f"Normalization {self.name!r}: mean and variance of shape {self.input_mean.shape} do not "
                    f"broadcast to the kept axes of inputs (None, {', '.join(map(str, self.input_shape or ()))})"
                ) from e
            dtype = np.dtype(self.compute_dtype)
            with ops.activate():
                self._given = (ops.asarray(mean.astype(dtype)), ops.asarray(var.astype(dtype)))

    def _aligned(self, a: np.ndarray) -> np.ndarray:
        """Given statistics shaped for broadcasting: a scalar as is, else its axes on the kept axes (from the right)."""
        if a.ndim == 0:
            return a
        assert self.input_shape is not None
        keep = self._keep(len(self.input_shape) + 1)
        shape = [1] * (len(self.input_shape) + 1)
        for i in range(1, min(a.ndim, len(keep)) + 1):
            shape[keep[-i]] = a.shape[-i]
        return a.reshape(shape) if a.ndim <= len(keep) else a

    def adapt(self, data: Any) -> None:
        """Compute the mean and (biased) variance of `data` (batch, *input_shape), per position on the kept axes."""
        if self.input_mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given mean and variance; adapt() would replace them")
        a = np.asarray(data)
        if a.dtype.kind not in "biuf" or a.ndim < 1 or a.shape[0] == 0:
            raise ValueError(
                f"Normalization.adapt expects a non-empty array of numbers (batch, *features), "
                f"received dtype {a.dtype} and shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError("Normalization.adapt: the data holds NaN or inf values")
        if self.input_shape is not None and tuple(a.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Normalization {self.name!r} was built for inputs (None, {', '.join(map(str, self.input_shape))}); "
                f"adapt() received data of shape {a.shape}"
            )
        keep = self._keep(a.ndim)
        reduce = tuple(i for i in range(a.ndim) if i not in keep)
        a64 = a.astype(np.float64)
        mean, var = a64.mean(axis=reduce), a64.var(axis=reduce)
        self.adapted_values = (mean, var)
        self.adapted = True
        if self.ops is not None and "mean" in self.params:  # already in a built model: write the weights now
            with self.ops.activate():
                for name, v in (("mean", mean), ("variance", var)):
                    view = self.params[name]
                    view[...] = self.ops.asarray(v.astype(np.dtype(self.compute_dtype)))
        elif self.input_shape is None:
            self.requested_input_shape = self.requested_input_shape or tuple(int(d) for d in a.shape[1:])

    def get_weights(self) -> list[np.ndarray]:
        # before adapt the weights are placeholders: a model rebuilding around this layer (add, pop)
        # must not write them back, which would count as statistics being given
        return super().get_weights() if self.adapted else []

    def weights_assigned(self) -> None:
        self.adapted = True  # statistics came from set_weights or a file

    def _statistics(self) -> tuple[Array, Array]:
        if self._given is not None:
            return self._given
        if not self.adapted:
            raise ValueError(
                f"Normalization layer {self.name!r} has no statistics yet: call layer.adapt(data) before using "
                "it, or pass mean=... and variance=..."
            )
        xp = self.ops.xp if self.ops is not None else np
        bshape = self._broadcast_shape()
        return xp.reshape(self.params["mean"], bshape), xp.reshape(self.params["variance"], bshape)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        mean, var = self._statistics()
        denom = xp.maximum(xp.sqrt(var), EPSILON)
        if training:
            self._denom = denom
        return mean + x * denom if self.invert else (x - mean) / denom

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        return dy * self._denom if self.invert else dy / self._denom

    def get_config(self) -> dict[str, Any]:
        axis: Any = None if not self.axis else (self.axis[0] if len(self.axis) == 1 else list(self.axis))
        return {
            "name": self.name,
            "axis": axis,
            "invert": self.invert,
            "mean": None if self.input_mean is None else self.input_mean.tolist(),
            "variance": None if self.input_variance is None else self.input_variance.tolist(),
        }

    def __repr__(self) -> str:
        state = "given" if self.input_mean is not None else ("adapted" if self.adapted else "not adapted")
        return f"Normalization(axis={self.get_config()['axis']}, {state}, name={self.name!r})"


def _numbers(value: Any, what: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else np.asarray([])
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"Normalization {what} must be finite numbers, received {value!r}")
    return a
