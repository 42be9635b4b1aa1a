"""Layer protocol shared by every layer.

A layer is built from its input shape (without the batch axis), declares its parameters as
`ParamSpec`s, and is then bound to views into the model's flat parameter store and to a
gradient sink. `forward` caches what `backward` needs; `backward` hands each parameter
gradient to the sink (`self.sink.matmul_t`, `column_sum`, `put`: the layer never decides
where gradients go) and returns the gradient with respect to its input (or None when the
model says nobody needs it, e.g. for the first layer).

The logits contract: `forward_preactivation` stops before the layer's output `activation`
(u = xW + b for Dense) and `backward_preactivation` starts from ∂L/∂u, so a loss fused with
that activation (softmax + cross-entropy gives p − y) can start backprop there. Layers
without an activation (`activation is None`) run their plain forward and backward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import initializers as inits
from ..backend import Ops
from ..regularizers import Regularizer
from ..variables import Variable

if TYPE_CHECKING:
    from ..activations import Activation
    from ..params import GradientSink

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
    initializer: inits.Initializer
    regularizer: Regularizer | None = None
    trainable: bool = True
    aggregation: str = "none"


@dataclass
class Affine:
    """A layer that at inference is exactly h = activation(x·kernel + bias): kernel (in, out), bias (out,)."""

    kernel: Array
    bias: Array | None
    activation: Activation


class Layer:
    # The output activation `forward_preactivation` stops before (None: the layer has none).
    activation: Activation | None = None
    # True when this class (not a parent) hands every parameter gradient to `self.sink` in its
    # backward: then plain SGD may update the weights inside backprop (`params.InPlaceSGD`).
    grads_via_sink: ClassVar[bool] = False
    # True when the layer is the identity at inference on flat inputs (Dropout; Flatten).
    identity_at_inference: ClassVar[bool] = False
    # True when a NaN in an input row always reaches the same output row (with the backend's
    # matmul and activation kernels, which the model probes): predict may then check outputs only.
    carries_nan: ClassVar[bool] = False
    # True for layers that take a list of inputs (merges): forward gets a list of arrays and
    # backward returns a list with one gradient (or None) per input.
    multi_input: ClassVar[bool] = False

    def __init__(self, name: str | None = None, input_shape: Any = None, trainable: bool = True) -> None:
        self.name = name
        self.requested_input_shape: Shape | None = _as_shape(input_shape) if input_shape is not None else None
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.ops: Ops | None = None
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.sink: GradientSink | None = None
        self.index = 0
        # Keras's freezing switch: False makes every weight of the layer non-trainable from the
        # next compile (or the build in fit), and runs BatchNormalization in inference mode
        self.trainable = bool(trainable)
        # the model's dtype, set when the model binds the layer (for constants a layer uploads then)
        self.compute_dtype = "float32"
        # at inference, whether to keep the pre-activation for someone to look at (trace); predict
        # turns it off so activations may reuse its memory
        self.keep_preactivation = True
        # a weak reference to the model whose parameter buffer holds this layer's weights (set when
        # the model binds it): a layer serves one model, so another model may not take it over
        self.model_ref: Any = None
        self._u: Array = None

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

    def __call__(self, inputs: Any) -> Any:
        """Record a call on symbolic tensors (an `Input`, another call's output): a functional model's graph.

        Builds the layer from the tensors' shapes on its first call; later calls (a shared layer)
        must see the same shapes. Returns the output `KerasTensor`.
        """
        from .node import KerasTensor, Node

        many = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if many else [inputs]
        what = f"{type(self).__name__} {self.name!r}" if self.name else f"a {type(self).__name__} layer"
        if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
            got = ", ".join(type(t).__name__ for t in tensors) or "an empty list"
            raise TypeError(
                f"{what} was called on {got}; call layers on symbolic tensors (Input(shape=...) or another "
                "layer's output) to build a Model, and run models on arrays with predict()"
            )
        if many != self.multi_input:
            need = "a list of tensors" if self.multi_input else "one tensor"
            raise TypeError(f"{what} takes {need}, received {len(tensors) if many else 1} in {type(inputs).__name__}")
        where = ", ".join(f"{t.describe()} {t.shape}" for t in tensors)
        shapes = [t.feature_shape for t in tensors]
        arg: Any = shapes if many else shapes[0]
        if self.built:
            built_for: Any = getattr(self, "input_shapes", None) if many else self.input_shape
            if built_for != arg:
                shown = [(None, *s) for s in built_for or []] if many else (None, *(built_for or ()))
                raise ValueError(f"{what} was built for input {shown} and cannot be called again on {where}")
        else:
            try:
                self.build(arg)
            except ValueError as e:
                raise ValueError(f"{what} cannot be called on {where}: {e}") from e
        return Node(self, tensors, many).output

    def param_specs(self) -> list[ParamSpec]:
        return []

    def bind(self, ops: Ops, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Attach the views of this layer's slice of the parameter store (the store then sets `sink`)."""
        self.ops, self.params, self.grads = ops, params, grads

    @property
    def built(self) -> bool:
        return self.output_shape is not None

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError(hand_written_layer_message(self))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        raise NotImplementedError(hand_written_layer_message(self))

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        """The output before `activation`; layers without one return their forward."""
        self._no_activation("forward_preactivation")
        return self.forward(x, training)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """Backward from ∂L/∂(pre-activation); layers without an activation run their backward."""
        self._no_activation("backward_preactivation")
        return self.backward(du, need_input_grad)

    def _no_activation(self, method: str) -> None:
        if self.activation is not None:
            raise NotImplementedError(f"{type(self).__name__} has an activation, so it must define {method}")

    @property
    def preactivation(self) -> Array | None:
        """The pre-activation u of the last forward pass, for layers with an activation (trace, the fused loss)."""
        return self._u

    @preactivation.setter
    def preactivation(self, u: Array) -> None:
        self._u = u

    def is_inference_identity(self) -> bool:
        """Whether predict may skip this layer: its own class (not a subclass) says so and forward is not replaced."""
        return bool(type(self).__dict__.get("identity_at_inference", False)) and "forward" not in vars(self)

    def replaces_methods(self) -> bool:
        """Whether forward or backward methods were replaced on this instance (a fast path must not skip them)."""
        return any(k in vars(self) for k in _STEP_METHODS)

    def inference_affine(self) -> Affine | None:
        """This layer as an `Affine`, when its inference forward is exactly that (a backend may run it faster)."""
        return None

    def count_params(self) -> int:
        return sum(int(np.prod(s.shape)) for s in self.param_specs()) if self.built else 0

    @property
    def weights(self) -> list[Variable]:
        """Every weight as a `Variable` (kernel, bias, ...; BatchNormalization: gamma, beta, moving_mean,
        moving_variance); empty until the layer belongs to a built model."""
        if self.ops is None:
            return []
        return [Variable(self, s) for s in self.param_specs()]

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if not w.trainable]

    def weights_assigned(self) -> None:
        """Called after new values were written into this layer's weights (set_weights, load, assign)."""

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
        self.weights_assigned()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"


_STEP_METHODS = ("forward", "backward", "forward_preactivation", "backward_preactivation")


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


def hand_written_layer_message(layer: Layer) -> str:
    """What a custom layer lacks, said once for every place that finds out (Keras's `call()` alone is not enough)."""
    name = type(layer).__name__
    if callable(getattr(layer, "call", None)):
        return (
            f"{name} defines call(), but xpnet does not differentiate call() yet: a custom layer computes with "
            "forward(x, training) and backward(dy, need_input_grad) written by hand (backward returns dL/dx and "
            "stores weight gradients in self.grads); see xpnet/layers/dense.py for one"
        )
    return f"{name} must define forward(x, training) and backward(dy, need_input_grad), as xpnet/layers/dense.py does"
