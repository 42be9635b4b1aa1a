from __future__ import annotations

from typing import Any

from .. import activations as acts
from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from . import _spatial as sp
from .base import Array, Layer, ParamSpec, Shape


class Conv1D(Layer):
    """h = φ(x ⋆ W + b), a 1-D convolution (cross-correlation, as in Keras) over time, channels-last.

    x: (batch, steps, in) → h: (batch, out_steps, filters); kernel W: (k, in, filters), bias b: (filters,).
    With the dilated width k' = (k − 1)·dilation + 1: padding="valid" gives floor((steps − k') / stride) + 1
    steps; "same" gives ceil(steps / stride), zero padding split as TensorFlow does (the odd step after);
    "causal" pads k' − 1 steps before only, so output t sees inputs up to t. Computed by the backend's
    2-D convolution on (batch, 1, steps, in), with a dilated kernel holding zeros between the taps.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int],
        strides: int | tuple[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | tuple[int] = 1,
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
        owner = "Conv1D"
        if not sp.is_int(filters) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive integer, received {filters!r}")
        self.filters = int(filters)
        self.kernel_size = sp.single(kernel_size, "kernel_size", owner)
        self.strides = sp.single(strides, "strides", owner)
        self.dilation_rate = sp.single(dilation_rate, "dilation_rate", owner)
        padding_name = str(padding).lower()
        if padding_name not in ("valid", "same", "causal"):
            raise ValueError(f"{owner}: padding must be 'valid', 'same' or 'causal', received {padding!r}")
        self.padding = padding_name
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError(
                f"{owner}: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras), "
                f"received strides={strides!r}, dilation_rate={dilation_rate!r}"
            )
        sp.channels_last(data_format, owner)
        if groups != 1:
            raise NotImplementedError(f"{owner}: only groups=1 is supported, received groups={groups!r}")
        self.activation: acts.Activation = acts.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = inits.get(kernel_initializer)
        self.bias_initializer = inits.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)
        self.pads: sp.Pads = (0, 0, 0, 0)
        self._ctx: Any = None
        self._h: Array = None

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    @property
    def span(self) -> int:
        """The dilated kernel width k' = (k − 1)·dilation + 1: the steps one output looks at."""
        return (self.kernel_size - 1) * self.dilation_rate + 1

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        owner = f"Conv1D {self.name!r}"
        steps, _ = sp.sequence_shape(input_shape, owner)
        if self.padding == "causal":
            out, before, after = (steps - 1) // self.strides + 1, self.span - 1, 0
        else:
            out, before, after = sp.out_and_pads(steps, self.span, self.strides, self.padding)
        if out <= 0:
            raise ValueError(
                f"{owner}: the kernel of width {self.span} (kernel_size {self.kernel_size}, dilation "
                f"{self.dilation_rate}) does not fit the {steps} input steps with padding='valid'; use "
                "padding='same' or 'causal', a smaller kernel, or fewer pooling/strided layers before this one"
            )
        self.pads = (0, 0, before, after)
        return (out, self.filters)

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        shape = (self.kernel_size, self.input_shape[-1], self.filters)
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

    def _kernel_2d(self) -> Array:
        """The kernel as the backend's 2-D convolution takes it: (1, k', in, filters), zeros between dilated taps."""
        assert self.ops is not None
        kernel = self.params["kernel"]
        k, c, f = kernel.shape
        if self.dilation_rate == 1:
            return self.ops.xp.reshape(kernel, (1, k, c, f))
        wide = self.ops.zeros((1, self.span, c, f), kernel.dtype)
        wide[0, :: self.dilation_rate, :, :] = kernel
        return wide

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        u = self.forward_preactivation(x, training)
        h = self.ops.activation_forward(self.activation, u)
        if training:
            self._h = h
        return h

    def forward_inference(self, x: Array, training: bool = False) -> Array:
        """predict's forward: φ applied in u's memory, (batch, out_steps, filters)."""
        assert self.ops is not None
        return self.ops.activation_forward(self.activation, self.forward_preactivation(x, False), in_place=True)

    def forward_preactivation(self, x: Array, training: bool = False) -> Array:
        """u = x ⋆ W + b only: (batch, out_steps, filters)."""
        assert self.ops is not None
        xp = self.ops.xp
        n, steps, c = x.shape
        u4, ctx = self.ops.conv2d_forward(
            xp.reshape(x, (n, 1, steps, c)),
            self._kernel_2d(),
            self.params.get("bias"),
            (1, self.strides),
            self.pads,
            need_ctx=training,
        )
        u = xp.reshape(u4, (n, u4.shape[2], self.filters))
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
        """From δ = ∂L/∂u (batch, out_steps, filters): fills ∂L/∂W, ∂L/∂b; returns ∂L/∂x (batch, steps, in) or None."""
        assert self.ops is not None and self.input_shape is not None and self.sink is not None
        xp = self.ops.xp
        n, out, f = du.shape
        steps, c = self.input_shape
        kernel2 = self._kernel_2d()
        dk, db, dx = self.ops.conv2d_backward(
            xp.reshape(du, (n, 1, out, f)),
            self._ctx,
            kernel2,
            (n, 1, steps, c),
            (1, self.strides),
            self.pads,
            need_input_grad,
        )
        # every gradient is computed before the sink sees one: an in-place SGD sink updates the kernel at once
        dk = dk[0, :: self.dilation_rate, :, :] if self.dilation_rate > 1 else xp.reshape(dk, (self.kernel_size, c, f))
        self.sink.put(self, "kernel", dk)
        if self.use_bias:
            self.sink.put(self, "bias", db)
        return None if dx is None else xp.reshape(dx, (n, steps, c))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filters": self.filters,
            "kernel_size": (self.kernel_size,),
            "strides": (self.strides,),
            "padding": self.padding,
            "dilation_rate": (self.dilation_rate,),
            "activation": serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
        }

    def __repr__(self) -> str:
        return (
            f"Conv1D({self.filters}, {self.kernel_size}, strides={self.strides}, padding={self.padding!r}, "
            f"activation={self.activation.name!r}, name={self.name!r})"
        )
