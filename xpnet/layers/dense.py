from __future__ import annotations

from typing import Any

from .. import activations as acts
from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from .base import Affine, Array, Layer, ParamSpec, Shape


class Dense(Layer):
    """h = φ(x W + b).

    x: (batch, in) → h: (batch, units); kernel W: (in, units), bias b: (units,).
    """

    def __init__(
        self,
        units: int,
        activation: str | acts.Activation | None = None,
        use_bias: bool = True,
        kernel_initializer: str | inits.Initializer = "glorot_uniform",
        bias_initializer: str | inits.Initializer = "zeros",
        kernel_regularizer: str | regs.Regularizer | None = None,
        bias_regularizer: str | regs.Regularizer | None = None,
        name: str | None = None,
        input_shape: Any = None,
        input_dim: int | None = None,
        trainable: bool = True,
    ) -> None:
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Dense units must be a positive integer, received {units!r}")
        self.units = units
        self.activation: acts.Activation = acts.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = inits.get(kernel_initializer)
        self.bias_initializer = inits.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)
        self._x: Array = None
        self._h: Array = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense {self.name!r} expects flat inputs (batch, features) but its input shape is "
                f"(None, {', '.join(map(str, input_shape))}); add a Flatten layer before it"
            )
        return (self.units,)

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        specs = [
            ParamSpec("kernel", (self.input_shape[0], self.units), self.kernel_initializer, self.kernel_regularizer)
        ]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.units,), self.bias_initializer, self.bias_regularizer))
        return specs

    @property
    def kernel(self) -> Array:
        return self.params["kernel"]

    @property
    def bias(self) -> Array | None:
        return self.params.get("bias")

    def inference_affine(self) -> Affine | None:
        # only while forward is this class's own: a subclass or a patched instance computes something else
        own = type(self) is Dense and "forward" not in vars(self)
        return Affine(self.params["kernel"], self.params.get("bias"), self.activation) if own else None

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        u, h = self.ops.dense_forward(x, self.params["kernel"], self.params.get("bias"), self.activation)
        self._u = u  # kept at inference too: the loss and trace read logits from it
        if training:
            self._x, self._h = x, h
        return h

    def forward_inference(self, x: Array, training: bool = False) -> Array:
        """predict's forward, h = φ(xW + b): (batch, in) → (batch, units), φ computed in u's memory where the
        backend can (u is then not meaningful; nobody looks at it after predict)."""
        assert self.ops is not None
        u, h = self.ops.dense_forward(x, self.params["kernel"], self.params.get("bias"), self.activation, False)
        self._u = u
        return h

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        """u = xW + b only: the fused loss applies the output activation itself."""
        assert self.ops is not None
        u = self.ops.affine(x, self.params["kernel"], self.params.get("bias"))
        self._u = u
        if training:
            self._x, self._h = x, None
        return u

    def forward_product(self, x: Array, training: bool = False) -> Array:
        """u = xW only, (batch, in) → (batch, units): the fused loss adds the bias as it reads u, leaving the
        logits in u (the plan's "bias added by the loss" form)."""
        assert self.ops is not None
        u = self.ops.matmul(x, self.params["kernel"])
        self._u = u
        if training:
            self._x, self._h = x, None
        return u

    def backward_product(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """Backward from ∂L/∂u (batch, units) where the loss has given the sink ∂L/∂b: ∂L/∂W to the sink, ∂L/∂x."""
        return self._backward_weights(du, need_input_grad, with_bias=False)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None and self.sink is not None
        # a backward_preactivation replaced on the instance or overridden by a subclass must see du
        if (
            not self.use_bias
            or self.replaces_methods()
            or type(self).backward_preactivation is not Dense.backward_preactivation
        ):
            du = self.ops.activation_backward(self.activation, self._u, self._h, dy)
            return self.backward_preactivation(du, need_input_grad)
        # the sink gets ∂L/∂b with ∂L/∂u: a backend may compute both in one pass
        du = self.sink.activation_column_sum(self, "bias", self.activation, self._u, self._h, dy)
        return self._backward_weights(du, need_input_grad, with_bias=False)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """Backward from ∂L/∂u (batch, units), e.g. the fused softmax + cross-entropy p − y.

        ∂L/∂W = xᵀ·du and ∂L/∂b = Σ_rows du go to the sink (which may apply SGD right away).
        """
        return self._backward_weights(du, need_input_grad, with_bias=self.use_bias)

    def _backward_weights(self, du: Array, need_input_grad: bool, with_bias: bool) -> Array | None:
        assert self.ops is not None and self.sink is not None
        dx = self.ops.matmul(du, self.params["kernel"].T) if need_input_grad else None  # before the sink moves W
        self.sink.matmul_t(self, "kernel", self._x, du)
        if with_bias:
            self.sink.column_sum(self, "bias", du)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "units": self.units,
            "activation": serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
        }

    def __repr__(self) -> str:
        return f"Dense(units={self.units}, activation={self.activation.name!r}, name={self.name!r})"
