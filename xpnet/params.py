"""The flat parameter store, and the gradient sinks layers hand their gradients to.

All of a model's weights live in one flat (P,) device buffer and their gradients in another;
each layer sees reshaped views of its slice. The optimizer then updates one array (one kernel
on CuPy), L1/L2 and weight I/O work on one array, and a checkpoint is one download.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from .backend import Ops

if TYPE_CHECKING:
    from .initializers import Initializer
    from .regularizers import Regularizer

Array = Any
Shape = tuple[int, ...]


@dataclass
class ParamSpec:
    """One weight a layer declares.

    trainable=False marks state the optimizer never touches (BatchNormalization's moving
    statistics, Normalization's mean and variance). aggregation="mean": a non-trainable weight
    the layer's training-mode forward updates, which data-parallel ranks average after each step.
    """

    name: str
    shape: Shape
    initializer: Initializer
    regularizer: Regularizer | None = None
    trainable: bool = True
    aggregation: str = "none"


class Layer(Protocol):
    """What the store, the sinks and a `Variable` use of a layer (`xpnet.layers.Layer` has it all): its
    name, its freezing switch, its weight declarations, and the views and sink the store binds to it."""

    name: str | None
    trainable: bool
    ops: Ops | None
    params: dict[str, Array]
    grads: dict[str, Array]
    sink: GradientSink | None
    compute_dtype: str

    def param_specs(self) -> list[ParamSpec]: ...

    def bind(self, ops: Ops, params: dict[str, Array], grads: dict[str, Array]) -> None: ...

    def weights_assigned(self) -> None: ...


# the store keeps the model's own layer class for those who read its slots (models/sharing.py)
L = TypeVar("L", bound=Layer)


@dataclass(frozen=True)
class Slot(Generic[L]):
    """One weight's place: layer `layer`'s parameter `spec.name` at [offset, offset + size) of the device
    buffer, and at [host_offset, host_offset + size) of the host order (`get_weights`' order)."""

    layer: L
    spec: ParamSpec
    offset: int
    size: int
    trainable: bool = True
    host_offset: int = 0

    @property
    def label(self) -> str:
        return f"{self.layer.name}/{self.spec.name}"


def is_trainable(layer: Layer, spec: ParamSpec) -> bool:
    """Whether the optimizer should train this weight: the weight is trainable and its layer not frozen."""
    return bool(spec.trainable and layer.trainable)


def buffer_group(layer: Layer, spec: ParamSpec) -> int:
    """Where the weight goes in the device buffer: 0 trainable, 1 moving (state the training forward
    updates), 2 other non-trainable."""
    if is_trainable(layer, spec):
        return 0
    # a frozen layer's training forward runs in inference mode, so its state does not move
    return 1 if spec.aggregation == "mean" and layer.trainable else 2


class ParamStore(Generic[L]):
    """Flat parameter and gradient buffers on one backend, with per-layer views.

    host_params: the initial (P,) values in host order: layer by layer, each layer's
    `param_specs()` in order (what `get_weights` returns, Keras's order).

    The device buffer `flat` is laid out [trainable | moving | other non-trainable]: `params`
    (the trainable prefix) is all the optimizer, the gradient buffer, L1/L2 and the Allreduce
    see, so non-trainable weights are never changed by them. `moving` holds the weights the
    layers' training forward updates (BatchNormalization's moving statistics), contiguous so
    data-parallel ranks average them with one Allreduce. A model whose weights are all
    trainable has the same buffer as before non-trainable weights existed.
    """

    def __init__(self, ops: Ops, layers: Sequence[L], host_params: np.ndarray, dtype: str) -> None:
        self.ops, self.dtype, self.layers = ops, dtype, list(layers)
        found: list[tuple[L, ParamSpec, int, int]] = []
        host = 0
        for layer in self.layers:
            for spec in layer.param_specs():
                n = int(np.prod(spec.shape))
                found.append((layer, spec, n, host))
                host += n
        if host_params.shape != (host,):
            raise ValueError(f"the model has {host} parameters, received a buffer of shape {host_params.shape}")

        placed: dict[int, Slot] = {}
        off, ends = 0, []
        for g in (0, 1, 2):
            for k, (layer, spec, n, h) in enumerate(found):
                if buffer_group(layer, spec) == g:
                    placed[k] = Slot(layer, spec, off, n, g == 0, h)
                    off += n
            ends.append(off)
        self.slots: list[Slot] = [placed[k] for k in range(len(found))]
        self.trainable_slots = [s for s in self.slots if s.trainable]
        self._t, self._m = ends[0], ends[1]
        self._in_host_order = all(s.offset == s.host_offset for s in self.slots)
        xp = ops.xp
        with ops.activate():
            self.flat: Array = ops.asarray(self.to_buffer_order(np.ascontiguousarray(host_params, dtype=dtype)))
            self.grads: Array = ops.zeros(self._t, getattr(xp, dtype))
        self.params: Array = self.flat[: self._t]
        self.moving: Array = self.flat[self._t : self._m]
        self.default_sink = GradientSink(ops)
        self.sink: GradientSink = self.default_sink
        self.rebind()

    def rebind(self) -> None:
        """Bind every layer to its views of this store (again, after another model's store held them)."""
        xp = self.ops.xp
        views: dict[int, tuple[dict[str, Array], dict[str, Array]]] = {id(lyr): ({}, {}) for lyr in self.layers}
        for s in self.slots:
            params, grads = views[id(s.layer)]
            params[s.spec.name] = xp.reshape(self.flat[s.offset : s.offset + s.size], s.spec.shape)
            if s.trainable:  # a weight without a gradient view is one the sinks leave alone
                grads[s.spec.name] = xp.reshape(self.grads[s.offset : s.offset + s.size], s.spec.shape)
        for layer in self.layers:
            layer.compute_dtype = self.dtype
            layer.bind(self.ops, *views[id(layer)])
            layer.sink = self.sink

    @property
    def size(self) -> int:
        """All parameters, trainable or not."""
        return int(self.flat.shape[0])

    @property
    def trainable_size(self) -> int:
        return self._t

    def stale(self) -> bool:
        """Whether a layer's `trainable` flag changed since this layout was made (compile applies it)."""
        # the group, not only trainability: a layer without trainable weights (BatchNormalization with
        # center=False, scale=False) still moves its statistics into or out of `moving`
        return any(self._group(s) != buffer_group(s.layer, s.spec) for s in self.slots)

    def _group(self, s: Slot) -> int:
        return 0 if s.offset < self._t else (1 if s.offset < self._m else 2)

    def trainable_labels(self) -> list[str]:
        """ "layer/weight" of each weight the optimizer trains, in host order (what checkpoints record)."""
        return [s.label for s in self.trainable_slots]

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

    def to_buffer_order(self, host: np.ndarray) -> np.ndarray:
        """A host (P,) array in host order rearranged as the device buffer lays the weights out."""
        if self._in_host_order:
            return host
        out = np.empty_like(host)
        for s in self.slots:
            out[s.offset : s.offset + s.size] = host[s.host_offset : s.host_offset + s.size]
        return out

    def to_host_order(self, buf: np.ndarray) -> np.ndarray:
        if self._in_host_order:
            return buf
        out = np.empty_like(buf)
        for s in self.slots:
            out[s.host_offset : s.host_offset + s.size] = buf[s.offset : s.offset + s.size]
        return out

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """A host (P,) array in host order cut into one array per weight (copies, shaped as `param_specs`)."""
        return [flat[s.host_offset : s.host_offset + s.size].reshape(s.spec.shape).copy() for s in self.slots]

    def split_grads(self, grads: np.ndarray) -> list[np.ndarray]:
        """A host copy of the (trainable) gradient buffer cut into one array per trainable weight."""
        return [grads[s.offset : s.offset + s.size].reshape(s.spec.shape).copy() for s in self.trainable_slots]

    def host_params(self) -> np.ndarray:
        """Every parameter, trainable or not, as one host (P,) array in host order (one download)."""
        return self.to_host_order(self.ops.to_numpy(self.flat))

    def host_grads(self) -> np.ndarray:
        return self.ops.to_numpy(self.grads)

    def set_host_params(self, flat: np.ndarray) -> None:
        """Overwrite every parameter from a host (P,) array in host order (one upload)."""
        host = self.to_buffer_order(np.ascontiguousarray(flat, dtype=self.dtype))
        with self.ops.activate():
            self.flat[...] = self.ops.asarray(host)
        for layer in self.layers:
            layer.weights_assigned()

    def regularized(self) -> list[tuple[Slot, Regularizer]]:
        """Trainable weights with a penalty (Keras counts penalties of trainable weights only)."""
        return [(s, s.spec.regularizer) for s in self.trainable_slots if s.spec.regularizer is not None]

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

    def save_moving(self) -> Array:
        """A device copy of the state a training forward may move (restored by `restore_moving`): every
        non-trainable weight, not only `moving`, since a layer unfrozen since the last compile already
        updates its statistics while they still sit with the other non-trainable weights."""
        return self.flat[self._t :] * 1.0  # a new array (array APIs differ on copy=)

    def restore_moving(self, saved: Array) -> None:
        self.flat[self._t :] = saved

    def __repr__(self) -> str:
        frozen = self.size - self._t
        extra = f" ({frozen} non-trainable)" if frozen else ""
        return (
            f"ParamStore({self.size} parameters{extra}, {len(self.slots)} weights, {self.ops.describe()}, {self.dtype})"
        )


class GradientSink:
    """Where layers hand their parameter gradients during backprop (Thinc's `inc_grad` idea).

    This one writes them into the store's gradient buffer for the optimizer's separate update.
    """

    applies_update = False

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        """∂L/∂w = aᵀ·b for layer's weight `name` (a: (k, m), b: (k, n), the weight viewed as (m, n)).

        A weight without a gradient view (non-trainable, a frozen layer's) gets nothing, here and below.
        """
        out = layer.grads.get(name)
        if out is None:
            return
        self.ops.matmul(a.T, b, out=out if out.ndim == 2 else self.ops.xp.reshape(out, (a.shape[1], b.shape[1])))

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        """∂L/∂w[j] = Σ_i d[i, j] (a bias)."""
        if name in layer.grads:
            self.ops.bias_grad(d, layer.grads[name])

    def activation_column_sum(self, layer: Layer, name: str, act: Any, u: Array, h: Array, dh: Array) -> Array:
        """∂L/∂u = act'(u)·dh (batch, units), with `column_sum(layer, name, ∂L/∂u)` done as well.

        One call, so a backend can compute both in one pass (`Ops.activation_backward_sum`).
        """
        target = self._column_target(layer, name)
        if target is None:
            du = self.ops.activation_backward(act, u, h, dh)
            self.column_sum(layer, name, du)
            return du
        return self.ops.activation_backward_sum(act, u, h, dh, *target)

    def column_target(self, layer: Layer, name: str) -> tuple[Array, str] | None:
        """(buffer, "set" or "sub") that `column_sum` writes its column sum to or subtracts it from, so a
        backend may do that inside the kernel that computes the sum; None where it does something else."""
        return self._column_target(layer, name)

    def _column_target(self, layer: Layer, name: str) -> tuple[Array, str] | None:
        """(buffer, "set" or "sub") that `column_sum` would write, None where it does something else."""
        if type(self).column_sum is not GradientSink.column_sum or name not in layer.grads:
            return None
        return layer.grads[name], "set"

    def put(self, layer: Layer, name: str, g: Array) -> None:
        """∂L/∂w = g, any shape."""
        if name in layer.grads:
            self.ops.assign(layer.grads[name], g)

    def put_target(self, layer: Layer, name: str) -> Array | None:
        """The buffer `put(layer, name, g)` copies g into, so a backend may compute g there; None where
        `put` does something else (an update, a sum) or the weight has no gradient."""
        if type(self).put is not GradientSink.put or name not in layer.grads:
            return None
        return layer.grads[name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InPlaceSGD(GradientSink):
    """Plain SGD applied as backprop reaches each layer: w ← w − g, where g already carries η/batch.

    Saves filling the gradient buffer and a separate pass over all weights; on NumPy the weight
    update is one BLAS GEMM with β = 1. The gradient buffer is left alone.
    """

    applies_update = True

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        if name not in layer.grads:  # not trained
            return
        w = layer.params[name]
        self.ops.gemm_sub(a, b, w if w.ndim == 2 else self.ops.xp.reshape(w, (a.shape[1], b.shape[1])))

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        if name in layer.grads:
            self.ops.bias_sub(d, layer.params[name])

    def _column_target(self, layer: Layer, name: str) -> tuple[Array, str] | None:
        if type(self).column_sum is not InPlaceSGD.column_sum or name not in layer.grads:
            return None
        return layer.params[name], "sub"

    def put(self, layer: Layer, name: str, g: Array) -> None:
        if name in layer.grads:
            self.ops.subtract_(layer.params[name], g)


class AccumulatingSink(GradientSink):
    """Adds each gradient to the buffer instead of writing it: the second and later calls of a shared layer.

    A layer called twice in one graph has ∂L/∂w = the sum over its calls; the first call's
    backward writes its share (the ordinary sink), the others add theirs through this one.
    The sums are namespace calls, not operators: a captured step keeps their results (training/program.py).
    """

    def matmul_t(self, layer: Layer, name: str, a: Array, b: Array) -> None:
        out = layer.grads.get(name)
        if out is not None:
            self.ops.assign(out, self.ops.xp.add(out, self.ops.xp.reshape(self.ops.matmul(a.T, b), out.shape)))

    def column_sum(self, layer: Layer, name: str, d: Array) -> None:
        out = layer.grads.get(name)
        if out is not None:
            self.ops.assign(out, self.ops.xp.add(out, self.ops.xp.sum(d, axis=0)))

    def put(self, layer: Layer, name: str, g: Array) -> None:
        out = layer.grads.get(name)
        if out is not None:
            self.ops.assign(out, self.ops.xp.add(out, g))
