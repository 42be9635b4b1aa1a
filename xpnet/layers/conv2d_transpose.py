from __future__ import annotations

from typing import Any

from .. import activations as acts
from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from . import _spatial as sp
from .base import Array, Layer, ParamSpec, Shape


class Conv2DTranspose(Layer):
    """h = φ(x ⋆ᵀ W + b), the transpose of a 2-D convolution ("deconvolution"), channels-last.

    x: (batch, height, width, in) → h: (batch, out_height, out_width, filters); kernel W:
    (kh, kw, filters, in) as in Keras, bias b: (filters,). Each input pixel adds W[:, :, :, c]·x[c]
    to a kh×kw block of the full result, blocks placed `strides` apart: F = (size − 1)·stride + k
    pixels. Keras's sizes: padding="valid" gives size·stride + max(k − stride, 0); "same" gives
    size·stride; with output_padding p (< stride), (size − 1)·stride + k − 2·pad + p, pad = k // 2
    for "same", else 0. "same" crops the full result as the gradient of a "same" Conv2D does
    (TensorFlow's rule: the smaller half before); an output longer than F ends in zeros (+ bias).

    It is exactly the input gradient of a Conv2D with this kernel, so the backend's col2im computes
    the forward pass and its im2col the backward pass (one GEMM each, one more for ∂L/∂W).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = (1, 1),
        padding: str = "valid",
        output_padding: int | tuple[int, int] | None = None,
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = (1, 1),
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
        owner = "Conv2DTranspose"
        if not sp.is_int(filters) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive integer, received {filters!r}")
        self.filters = int(filters)
        self.kernel_size = sp.pair(kernel_size, "kernel_size", owner)
        self.strides = sp.pair(strides, "strides", owner)
        self.padding = sp.padding_arg(padding, owner)
        self.output_padding: tuple[int, int] | None = None
        if output_padding is not None:
            items: Any = (output_padding, output_padding) if sp.is_int(output_padding) else output_padding
            try:
                oph, opw = items
            except (TypeError, ValueError):
                oph = opw = -1
            if not all(sp.is_int(p) and 0 <= p < s for p, s in zip((oph, opw), self.strides, strict=True)):
                raise ValueError(
                    f"{owner}: output_padding must be None or non-negative integers smaller than strides "
                    f"{self.strides} (as in Keras), received {output_padding!r}"
                )
            self.output_padding = (int(oph), int(opw))
        sp.channels_last(data_format, owner)
        if sp.pair(dilation_rate, "dilation_rate", owner) != (1, 1):
            raise NotImplementedError(f"{owner}: only dilation_rate=(1, 1) is supported, received {dilation_rate!r}")
        self.activation: acts.Activation = acts.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = inits.get(kernel_initializer)
        self.bias_initializer = inits.get(bias_initializer)
        self.kernel_regularizer = regs.get(kernel_regularizer)
        self.bias_regularizer = regs.get(bias_regularizer)
        # the pads of the Conv2D this layer transposes, which maps the output back to the input, and
        # the rows and columns of zeros the output has after the full result (Keras's longer sizes)
        self.pads: sp.Pads = (0, 0, 0, 0)
        self.extra = (0, 0)
        self._x: Array = None
        self._h: Array = None

    @property
    def default_name(self) -> str:
        return sp.keras_name(type(self).__name__)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, _ = sp.image_shape(input_shape, f"Conv2DTranspose {self.name!r}")
        out, pads, extra = [], [], []
        for axis, (size, k, s) in enumerate(zip((h, w), self.kernel_size, self.strides, strict=True)):
            full = (size - 1) * s + k
            if self.output_padding is None:
                length = size * s + (max(k - s, 0) if self.padding == "valid" else 0)
            else:
                length = full - 2 * (k // 2 if self.padding == "same" else 0) + self.output_padding[axis]
            cut = max(full - length, 0) // 2 if self.padding == "same" else 0
            out.append(length)
            pads += [cut, max(full - cut - length, 0)]
            extra.append(max(length - (full - cut), 0))
        self.pads = (pads[0], pads[1], pads[2], pads[3])
        self.extra = (extra[0], extra[1])
        return (out[0], out[1], self.filters)

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        shape = (*self.kernel_size, self.filters, self.input_shape[-1])
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

    def _kernel_matrix(self) -> Array:
        """W as the (kh·kw·filters, in) matrix whose rows follow im2col's patch order (i, j, channel)."""
        assert self.ops is not None
        kernel = self.params["kernel"]
        return self.ops.xp.reshape(kernel, (-1, kernel.shape[3]))

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
        """u = x ⋆ᵀ W + b only: (batch, out_height, out_width, filters)."""
        assert self.ops is not None and self.output_shape is not None
        xp = self.ops.xp
        n, h, w, c = x.shape
        cols = self.ops.matmul(xp.reshape(x, (n * h * w, c)), self._kernel_matrix().T)
        oh, ow, f = self.output_shape
        eh, ew = self.extra
        reach = (n, oh - eh, ow - ew, f)  # the pixels the full result covers
        u = self.ops.col2im(
            xp.reshape(cols, (n, h, w, cols.shape[1])), reach, self.kernel_size, self.strides, self.pads
        )
        if eh or ew:
            u = self.ops.pad2d(u, (0, eh, 0, ew))
        bias = self.params.get("bias")
        if bias is not None:
            u = u + bias
        self._u = u
        if training:
            self._x, self._h = x, None
        return u

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        assert self.ops is not None
        du = self.ops.activation_backward(self.activation, self._u, self._h, dy)
        return self.backward_preactivation(du, need_input_grad)

    def backward_preactivation(self, du: Array, need_input_grad: bool = True) -> Array | None:
        """From δ = ∂L/∂u (batch, out_height, out_width, filters): fills ∂L/∂W, ∂L/∂b; returns ∂L/∂x or None.

        With P = im2col(δ) (batch·h·w, kh·kw·filters): ∂L/∂x = P·W, ∂L/∂W = Pᵀ·x, ∂L/∂b = Σ δ.
        """
        assert self.ops is not None and self.sink is not None
        xp = self.ops.xp
        n, h, w, c = self._x.shape
        eh, ew = self.extra
        reached = du[:, : du.shape[1] - eh, : du.shape[2] - ew, :] if eh or ew else du
        patches = self.ops.im2col(reached, self.kernel_size, self.strides, self.pads)
        p2 = xp.reshape(patches, (n * h * w, patches.shape[3]))
        # ∂L/∂x before any weight gradient: an in-place SGD sink updates W as soon as it receives ∂L/∂W
        dx = xp.reshape(self.ops.matmul(p2, self._kernel_matrix()), (n, h, w, c)) if need_input_grad else None
        self.sink.matmul_t(self, "kernel", p2, xp.reshape(self._x, (n * h * w, c)))
        if self.use_bias:
            self.sink.column_sum(self, "bias", xp.reshape(du, (-1, self.filters)))
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "activation": serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
        }

    def __repr__(self) -> str:
        return (
            f"Conv2DTranspose({self.filters}, {self.kernel_size}, strides={self.strides}, "
            f"padding={self.padding!r}, activation={self.activation.name!r}, name={self.name!r})"
        )
