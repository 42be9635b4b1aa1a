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

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import initializers as inits
from .. import regularizers as regs
from ..backend import Ops
from ..backend.values import weight_source, write_weight
from ..params import ParamSpec, Shape
from ..variables import Variable
from . import custom

if TYPE_CHECKING:
    from ..activations import Activation
    from ..params import GradientSink

Array = Any


@dataclass
class Affine:
    """A layer that at inference is exactly h = activation(x·kernel + bias): kernel (in, out), bias (out,)."""

    kernel: Array
    bias: Array | None
    activation: Activation


class Layer:
    # The output activation `forward_preactivation` stops before (None: the layer has none).
    activation: Activation | None = None
    # True when the layer is the identity at inference on flat inputs (Dropout; Flatten).
    identity_at_inference: ClassVar[bool] = False
    # True for layers that take a list of inputs (merges): forward gets a list of arrays and
    # backward returns a list with one gradient (or None) per input.
    multi_input: ClassVar[bool] = False
    # True for a Keras-style custom layer: a subclass that defines `call` (forward code only, xpnet.ops);
    # the tape differentiates it (xpnet/layers/custom.py)
    keras_call: ClassVar[bool] = False
    # True when the layer's random draws are keyed by its own training-call counter `iterations`
    # (Dropout): checkpoints carry it, and fit sets its `row_offset` (this rank's first row in the
    # global batch) before each step.
    counts_steps: ClassVar[bool] = False
    # True for a custom layer (one with `call`) whose tape hands every weight gradient to the sink
    # (layers/custom.py), so plain SGD may update its weights inside backprop (training/plan.py)
    grads_via_sink: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.keras_call = callable(getattr(cls, "call", None))
        if cls.keras_call and "grads_via_sink" not in cls.__dict__:
            # the tape hands every weight gradient to the sink (layers/custom.py); a class between says
            # otherwise (Model: its layers' own classes decide)
            between = [k for k in cls.__mro__[1:] if k not in (Layer, object)]
            said = [vars(k)["grads_via_sink"] for k in between if "grads_via_sink" in vars(k)]
            cls.grads_via_sink = said[0] if said else True
        user_build = cls.__dict__.get("build")
        if cls.keras_call and user_build is not None:
            cls.build = _keras_build(user_build)  # type: ignore[method-assign]

    def __init__(
        self, name: str | None = None, input_shape: Any = None, trainable: bool = True, dtype: Any = None
    ) -> None:
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
        # a weak reference to the model whose parameter buffer holds this layer's weights (set when
        # the model binds it): a layer serves one model, so another model may not take it over
        self.model_ref: Any = None
        self._u: Array = None
        if dtype is not None and str(dtype) not in ("float32", "float64"):
            raise ValueError(f"layer dtype must be 'float32' or 'float64' (the model's), received {dtype!r}")
        # the calls recorded on symbolic tensors, first first (Keras's `layer.input` / `layer.output`)
        self.inbound_nodes: list[Any] = []

    @property
    def default_name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    @property
    def sink(self) -> GradientSink | None:
        """Where backward hands parameter gradients (set by the parameter store; sublayers share it)."""
        # kept under "sink" in the instance dict, where copies and state snapshots look for it
        return self.__dict__.get("sink")

    @sink.setter
    def sink(self, value: GradientSink | None) -> None:
        self.__dict__["sink"] = value
        if self.keras_call:
            for _, sub in custom.sublayers(self):
                sub.sink = value

    def build(self, input_shape: Any) -> Any:
        """Keras's `layer.build((None, *features))`: make the weights of a standalone layer, then
        `get_weights`/`set_weights` work. Models call it with the feature shape alone (no batch axis)
        and receive the output shape."""
        if self.keras_call and self.__dict__.get("_xp_building"):
            return None  # a custom build's `super().build(input_shape)`
        keras_shape = _keras_shape(input_shape)
        if keras_shape is not None:
            self.build_for(keras_shape)
            if self.ops is None:
                custom.bind_standalone(self)
            return None
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def build_for(self, feature_shape: Any) -> Shape:
        """Build for inputs of `feature_shape` (no batch axis; a list with several inputs): the output shape."""
        if self.keras_call:
            cls = type(self)
            own_shape = cls.compute_output_shape is not Layer.compute_output_shape
            return custom.build_for(self, feature_shape, cls.build is not Layer.build, own_shape)
        out = self.build(feature_shape)
        assert out is not None
        return tuple(out)

    def add_weight(
        self,
        shape: Any = None,
        initializer: Any = "glorot_uniform",
        dtype: Any = None,
        trainable: bool = True,
        regularizer: Any = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Declare a weight (Keras's API, from `build` or `__init__`): returns a `Weight` that `xpnet.ops`
        and operators take. shape: a tuple of ints; initializer: a name or an Initializer; it is
        stored in the model's flat parameter buffer in the model's dtype."""
        if shape is None or (not isinstance(shape, int) and any(d is None for d in shape)):
            raise ValueError(f"add_weight needs a fully known shape, received {shape!r}")
        dims = () if shape == () else _as_shape(shape)
        added = self.__dict__.setdefault("_xp_added", [])
        name = f"variable_{len(added)}" if name is None else str(name)
        if any(s.name == name for s in added):
            raise ValueError(f"layer {self.name!r} already has a weight named {name!r}; give add_weight another name=")
        spec = ParamSpec(name, dims, inits.get(initializer), regs.get(regularizer), bool(trainable))
        added.append(spec)
        return custom.Weight(self, spec)

    def add_loss(self, value: Any) -> None:
        """Add a scalar (from `xpnet.ops`, inside `call`) to the model's loss for this training step."""
        custom.add_loss(self, value)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """A layer made from `get_config()`'s dict (Keras's default: the constructor's arguments)."""
        return cls(**config)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def __call__(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        """Record a call on symbolic tensors (an `Input`, another call's output): a functional model's graph.

        Builds the layer from the tensors' shapes on its first call; later calls (a shared layer)
        must see the same shapes. Returns the output `KerasTensor`. On arrays (NumPy, the
        backend's) the layer computes at once, as Keras's eager call: it is built and given weights
        of its own first when it belongs to no model. A custom layer takes several tensors as
        several arguments too (`layer(a, b)` calls `call(a, b)`).
        """
        from .node import KerasTensor, Node

        inputs = self._call_inputs(inputs, args, kwargs)
        many = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if many else [inputs]
        if tensors and all(hasattr(t, "shape") and not isinstance(t, KerasTensor) for t in tensors):
            return custom.eager_call(self, inputs, training)
        if self.keras_call and many and not self.built:
            self.multi_input = True  # type: ignore[misc]
        what = f"{type(self).__name__} {self.name!r}" if self.name else f"a {type(self).__name__} layer"
        if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
            got = ", ".join(type(t).__name__ for t in tensors) or "an empty list"
            raise TypeError(
                f"{what} was called on {got}; call layers on symbolic tensors (Input(shape=...) or another "
                "layer's output) to build a Model, or on arrays to compute at once"
            )
        if many != self.multi_input:
            need = "a list of tensors" if self.multi_input else "one tensor"
            raise TypeError(f"{what} takes {need}, received {len(tensors) if many else 1} in {type(inputs).__name__}")
        self._build_for_call(tensors, many, what)
        return Node(self, tensors, many).output

    def _call_inputs(self, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`__call__`'s inputs: a custom layer's several arguments as a list; other extra arguments refused."""
        if kwargs:  # nothing would pass them on: refuse rather than ignore (Keras's mask=, ...)
            raise TypeError(
                f"{type(self).__name__} was called with {sorted(kwargs)}; xpnet calls a layer with its inputs "
                "and training only"
            )
        if self.keras_call and args:
            self.__dict__["_xp_spread"] = True
            return [inputs, *args]
        if args:
            raise TypeError(f"{type(self).__name__} takes one input (or a list), received {1 + len(args)} arguments")
        return inputs

    def _build_for_call(self, tensors: list[Any], many: bool, what: str) -> None:
        """Build for the symbolic tensors' shapes on the first call; later calls must bring the same shapes."""
        where = ", ".join(f"{t.describe()} {t.shape}" for t in tensors)
        shapes = [t.feature_shape for t in tensors]
        arg: Any = shapes if many else shapes[0]
        if self.built:
            built_for: Any = getattr(self, "input_shapes", None) if many else self.input_shape
            if built_for != arg:
                shown = [(None, *s) for s in built_for or []] if many else (None, *(built_for or ()))
                raise ValueError(f"{what} was built for input {shown} and cannot be called again on {where}")
            return
        try:
            self.build_for(arg)
        except ValueError as e:
            raise ValueError(f"{what} cannot be called on {where}: {e}") from e

    @property
    def output(self) -> Any:
        """The symbolic output of this layer's first call (Keras's `layer.output`), e.g. in a built Sequential."""
        return self._first_node("output").output

    @property
    def input(self) -> Any:
        """The symbolic input of this layer's first call (a list for a merge layer), as Keras's `layer.input`."""
        node = self._first_node("input")
        return list(node.inputs) if node.multi else node.inputs[0]

    def _first_node(self, what: str) -> Any:
        nodes = getattr(self, "inbound_nodes", None)
        if not nodes:
            raise AttributeError(
                f"layer {self.name!r} has no {what} yet: it has not been called on a symbolic tensor "
                "(build the model it belongs to, or call it on Input(shape=...))"
            )
        return nodes[0]

    def param_specs(self) -> list[ParamSpec]:
        """The weights: a custom layer's `add_weight`s, then its sublayers' ("attribute/kernel")."""
        return custom.param_specs(self) if self.keras_call else []

    def bind(self, ops: Ops, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Attach the views of this layer's slice of the parameter store (the store then sets `sink`)."""
        self.ops, self.params, self.grads = ops, params, grads
        if self.keras_call:
            custom.bind_sublayers(self)

    @property
    def built(self) -> bool:
        return self.output_shape is not None

    def forward(self, x: Array, training: bool = False) -> Array:
        """x: (batch, *input_shape) → (batch, *output_shape); a custom layer runs `call` (recorded in training)."""
        if self.keras_call:
            return custom.forward(self, x, training)
        raise NotImplementedError(
            f"{type(self).__name__} defines neither forward/backward (xpnet's layer protocol) nor call(self, inputs) "
            "(Keras's custom-layer API, differentiated for you): define call"
        )

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        """∂L/∂x from ∂L/∂output dy; parameter gradients go to `self.sink`."""
        if self.keras_call:
            return custom.backward(self, dy, need_input_grad)
        raise NotImplementedError(f"{type(self).__name__} defines forward but no backward; define call instead")

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        """The output before `activation`; layers without one return their forward."""
        if self.keras_call:  # a call ending in ops.softmax stops before it (layers/custom.py)
            return custom.forward(self, x, training, logits=True)
        self._no_activation("forward_preactivation")
        return self.forward(x, training)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """Backward from ∂L/∂(pre-activation); layers without an activation run their backward."""
        if self.keras_call:
            return custom.backward(self, du, need_input_grad)
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

    def take_model_seed(self, seed: int) -> None:
        """Given the seed the model drew for this layer at build: layers with random draws of their own
        (Dropout) keep it when the user gave none; others have no use for it."""

    def seeded_by_model(self, seed: int) -> bool:
        """Whether this layer's random draws follow `seed`, the one the model drew for it (not the user's own)."""
        return False

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
        # device arrays of this backend are written as they are; host data is uploaded once per weight
        arrays = [weight_source(self.ops, w) for w in weights]
        for s, w in zip(specs, arrays, strict=True):
            if tuple(w.shape) != tuple(s.shape):
                raise ValueError(f"layer {self.name!r}: {s.name} must have shape {s.shape}, received {tuple(w.shape)}")
        for s, w in zip(specs, arrays, strict=True):
            write_weight(self.ops, self.params[s.name], w)
        self.weights_assigned()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"


_STEP_METHODS = ("forward", "backward", "forward_preactivation", "backward_preactivation")


def _keras_shape(shape: Any) -> Any:
    """The feature shape(s) of a Keras-style shape with a leading None batch axis, else None."""
    if isinstance(shape, list) and shape and all(isinstance(s, (list, tuple)) for s in shape):
        inner = [_keras_shape(s) for s in shape]
        return None if any(s is None for s in inner) else inner
    if isinstance(shape, (list, tuple)) and shape and shape[0] is None:
        return _as_shape(shape)
    return None


def _keras_build(user_build: Any) -> Any:
    """A custom layer's own `build(input_shape)`, run by `build_for` with Keras's batch shape; called by the
    user (`layer.build((None, 4))`), it also completes the layer (output shape, weights of its own)."""

    @functools.wraps(user_build)
    def build(self: Layer, input_shape: Any) -> Any:
        if self.__dict__.get("_xp_building"):
            return user_build(self, input_shape)
        keras_shape = _keras_shape(input_shape)
        feature = keras_shape if keras_shape is not None else _as_shape(tuple(input_shape)[1:])
        self.build_for(feature)
        if self.ops is None:
            custom.bind_standalone(self)
        return None

    return build


def _as_shape(shape: Any) -> Shape:
    if isinstance(shape, int):
        return (shape,)
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"input shape must be positive integers (without the batch axis), received {shape}")
    return tuple(int(d) for d in shape)


custom.LAYER = Layer
