"""The flat parameter store, and the gradient sinks layers hand their gradients to.

All of a model's weights live in one flat (P,) device buffer and their gradients in another;
each layer sees reshaped views of its slice. The optimizer then updates one array (one kernel
on CuPy), L1/L2 and weight I/O work on one array, and a checkpoint is one download.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Ops

if TYPE_CHECKING:
    from .layers.base import Layer, ParamSpec
    from .regularizers import Regularizer

Array = Any


@dataclass(frozen=True)
class Slot:
    """One weight's place in the flat buffer: layer `layer`'s parameter `spec.name` at [offset, offset + size)."""

    layer: Layer
    spec: ParamSpec
    offset: int
    size: int

    @property
    def label(self) -> str:
        return f"{self.layer.name}/{self.spec.name}"


class ParamStore:
    """Flat parameter and gradient buffers on one backend, with per-layer views.

    host_params: the initial (P,) values, in layer order and each layer's `param_specs()` order.
    """

    def __init__(self, ops: Ops, layers: Sequence[Layer], host_params: np.ndarray, dtype: str) -> None:
        self.ops, self.dtype, self.layers = ops, dtype, list(layers)
        self.slots: list[Slot] = []
        off = 0
        for layer in self.layers:
            for spec in layer.param_specs():
                n = int(np.prod(spec.shape))
                self.slots.append(Slot(layer, spec, off, n))
                off += n
        if host_params.shape != (off,):
            raise ValueError(f"the model has {off} parameters, received a buffer of shape {host_params.shape}")
        xp = ops.xp
        with ops.activate():
            self.params: Array = ops.asarray(np.ascontiguousarray(host_params, dtype=dtype))
            self.grads: Array = ops.zeros(off, getattr(xp, dtype))
        self.default_sink = GradientSink(ops)
        self.sink: GradientSink = self.default_sink
        self._bind()

    def _bind(self) -> None:
        xp = self.ops.xp
        views: dict[int, tuple[dict[str, Array], dict[str, Array]]] = {id(lyr): ({}, {}) for lyr in self.layers}
        for s in self.slots:
            params, grads = views[id(s.layer)]
            params[s.spec.name] = xp.reshape(self.params[s.offset : s.offset + s.size], s.spec.shape)
            grads[s.spec.name] = xp.reshape(self.grads[s.offset : s.offset + s.size], s.spec.shape)
        for layer in self.layers:
            layer.bind(self.ops, *views[id(layer)])
            layer.sink = self.sink

    @property
    def size(self) -> int:
        return int(self.params.shape[0])

    def use_sink(self, sink: GradientSink | None = None) -> None:
        """Route every layer's gradients to `sink` from now on (None: back to the gradient buffer)."""
        sink = sink or self.default_sink
        if sink is not self.sink:
            self.sink = sink
            for layer in self.layers:
                layer.sink = sink

    def layout(self) -> list[dict[str, Any]]:
        """The architecture as weight files and checkpoints record it: each layer's name, class and weight shapes."""
        return [
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "params": {s.name: list(s.shape) for s in layer.param_specs()},
            }
            for layer in self.layers
        ]

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """A host (P,) array cut into one array per weight (copies, shaped as `param_specs`)."""
        return [flat[s.offset : s.offset + s.size].reshape(s.spec.shape).copy() for s in self.slots]

    def host_params(self) -> np.ndarray:
        return self.ops.to_numpy(self.params)

    def host_grads(self) -> np.ndarray:
        return self.ops.to_numpy(self.grads)

    def set_host_params(self, flat: np.ndarray) -> None:
        """Overwrite every parameter from a host (P,) array (one upload)."""
        with self.ops.activate():
            self.params[...] = self.ops.asarray(np.ascontiguousarray(flat, dtype=self.dtype))

    def regularized(self) -> list[tuple[Slot, Regularizer]]:
        return [(s, s.spec.regularizer) for s in self.slots if s.spec.regularizer is not None]

    def penalty(self) -> Any:
        """Σ of every weight penalty (a 0-d device value; 0.0 without regularizers)."""
        xp = self.ops.xp
        total: Any = 0.0
        for s, reg in self.regularized():
            total = total + reg.penalty(xp, s.layer.params[s.spec.name])
        return total

    def add_penalty_grads(self, scale: Any) -> None:
        """grads += scale · ∂penalty/∂w for every regularized weight."""
        xp = self.ops.xp
        for s, reg in self.regularized():
            w = s.layer.params[s.spec.name]
            s.layer.grads[s.spec.name][...] += reg.grad(xp, w) * scale

    def __repr__(self) -> str:
        return f"ParamStore({self.size} parameters, {len(self.slots)} weights, {self.ops.describe()}, {self.dtype})"


class GradientSink:
    """Where layers hand their parameter gradients during backprop (Thinc's `inc_grad` idea).

    This one writes them into the store's gradient buffer for the optimizer's separate update.
    """

    applies_update = False

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        """∂L/∂w = aᵀ·b for layer's weight `name` (a: (k, m), b: (k, n), the weight viewed as (m, n))."""
        out = layer.grads[name]
        self.ops.matmul(a.T, b, out=out if out.ndim == 2 else self.ops.xp.reshape(out, (a.shape[1], b.shape[1])))

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        """∂L/∂w[j] = Σ_i d[i, j] (a bias)."""
        self.ops.bias_grad(d, layer.grads[name])

    def put(self, layer: Layer, name: str, g: Array) -> None:
        """∂L/∂w = g, any shape."""
        layer.grads[name][...] = g

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InPlaceSGD(GradientSink):
    """Plain SGD applied as backprop reaches each layer: w ← w − g, where g already carries η/batch.

    Saves filling the gradient buffer and a separate pass over all weights; on NumPy the weight
    update is one BLAS GEMM with β = 1. The gradient buffer is left alone.
    """

    applies_update = True

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        w = layer.params[name]
        self.ops.gemm_sub(a, b, w if w.ndim == 2 else self.ops.xp.reshape(w, (a.shape[1], b.shape[1])))

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        self.ops.bias_sub(d, layer.params[name])

    def put(self, layer: Layer, name: str, g: Array) -> None:
        layer.params[name][...] -= g


class AccumulatingSink(GradientSink):
    """Adds each gradient to the buffer instead of writing it: the second and later calls of a shared layer.

    A layer called twice in one graph has ∂L/∂w = the sum over its calls; the first call's
    backward writes its share (the ordinary sink), the others add theirs through this one.
    """

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        out = layer.grads[name]
        out[...] = out + self.ops.xp.reshape(self.ops.matmul(a.T, b), out.shape)

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        out = layer.grads[name]
        out[...] = out + self.ops.xp.sum(d, axis=0)

    def put(self, layer: Layer, name: str, g: Array) -> None:
        out = layer.grads[name]
        out[...] = out + g
