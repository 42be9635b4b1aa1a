from __future__ import annotations

from typing import Any

from .. import activations as acts
from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from . import _spatial as sp
from .base import Array, Layer, ParamSpec, Shape


class Conv2D(Layer):
    """h = φ(x ⋆ W + b), a 2-D convolution (cross-correlation, as in Keras), channels-last.

    x: (batch, height, width, in) → h: (batch, out_height, out_width, filters);
    kernel W: (kh, kw, in, filters), bias b: (filters,).
    padding="valid": out = floor((size − k) / stride) + 1; "same": out = ceil(size / stride), zero
    padding split as TensorFlow does (the odd pixel after). Computed as one GEMM of the patch
    matrix (im2col) with W for the forward pass, one for ∂L/∂W and one (then col2im) for ∂L/∂x.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = (1, 1),
        groups: int = 1,
        activation: str | acts.Activation | None = None,
        use_bias: bool = True,
        kernel_initializer: str | inits.Initializer = "glorot_uniform",
        bias_initializer: str | inits.Initializer = "zeros",
        kernel_regularizer: str | regs.Regularizer | None = None,
        bias_regularizer: str | regs.Regularizer | None = None,
        name: str | None = None,
        input_shape: Any = None,
        trainable: bool = True,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        owner = "Conv2D"
        if not sp.is_int(filters) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive integer, received {filters!r}")
        self.filters = int(filters)
        self.kernel_size = sp.pair(kernel_size, "kernel_size", owner)
        self.strides = sp.pair(strides, "strides", owner)
        self.padding = sp.padding_arg(padding, owner)
        sp.channels_last(data_format, owner)
        if sp.pair(dilation_rate, "dilation_rate", owner) != (1, 1) or groups != 1:
            raise NotImplementedError(f"{owner}: only dilation_rate=(1, 1) and groups=1 are supported")
        self.activation: acts.Activation = acts.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = inits.get(kernel_initializer)
        self.bias_initializer = inits.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)
        self.pads: sp.Pads = (0, 0, 0, 0)
        self._ctx: Any = None
        self._u: Array = None
        self._h: Array = None

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        owner = f"Conv2D {self.name!r}"
        h, w, _ = sp.image_shape(input_shape, owner)
        (oh, ow), self.pads = sp.geometry((h, w), self.kernel_size, self.strides, self.padding, owner)
        return (oh, ow, self.filters)

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        shape = (*self.kernel_size, self.input_shape[-1], self.filters)
        specs = [ParamSpec("kernel", shape, self.kernel_initializer, self.kernel_regularizer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.filters,), self.bias_initializer, self.bias_regularizer))
        return specs

    @property
    def kernel(self) -> Array:
        return self.params["kernel"]

    @property
    def bias(self) -> Array | None:
        return self.params.get("bias")

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        u = self.forward_preactivation(x, training)
        h = self.ops.activation_forward(self.activation, u)
        if training:
            self._h = h
        return h

    def forward_inference(self, x: Array, training: bool = False) -> Array:
        """predict's forward: φ applied in u's memory, (batch, out_height, out_width, filters)."""
        assert self.ops is not None
        return self.ops.activation_forward(self.activation, self.forward_preactivation(x, False), in_place=True)

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        """u = x ⋆ W + b only: (batch, out_height, out_width, filters)."""
        assert self.ops is not None
        u, ctx = self.ops.conv2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides, self.pads, need_ctx=training
        )
        self._u = u
        self._ctx = ctx if training else None
        if training:
            self._h = None
        return u

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None
        du = self.ops.activation_backward(self.activation, self._u, self._h, dy)
        return self.backward_preactivation(du, need_input_grad)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """From δ = ∂L/∂u (batch, out_height, out_width, filters): fills ∂L/∂W, ∂L/∂b; returns ∂L/∂x or None."""
        assert self.ops is not None and self.input_shape is not None
        x_shape = (du.shape[0], *self.input_shape)
        kernel = self.params["kernel"]
        assert self.sink is not None
        targets = (self.sink.put_target(self, "kernel"), self.sink.put_target(self, "bias") if self.use_bias else None)
        if targets[0] is not None and (targets[1] is not None or not self.use_bias):  # computed in place
            args = (du, self._ctx, kernel, x_shape, self.strides, self.pads, need_input_grad)
            return self.ops.conv2d_backward_into(targets, *args)
        dk, db, dx = self.ops.conv2d_backward(du, self._ctx, kernel, x_shape, self.strides, self.pads, need_input_grad)
        self._put_grad("kernel", dk)
        if self.use_bias:
            self._put_grad("bias", db)
        return dx

    def _put_grad(self, name: str, g: Array) -> None:
        assert self.sink is not None
        self.sink.put(self, name, g)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "activation": serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
        }

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.filters}, {self.kernel_size}, strides={self.strides}, padding={self.padding!r}, "
            f"activation={self.activation.name!r}, name={self.name!r})"
        )
