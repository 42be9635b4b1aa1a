"""The image layers' math (convolution, pooling) every backend inherits, written against the array API.

Channels-last: x (n, height, width, channels); pads (top, bottom, left, right). `Ops` extends this
class; NumPy and CuPy override the hot spots (numpy_images.py, cuda_kernels.py), each tested against
these plain methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

Array = Any


class ImageOps:
    """Convolution and pooling on an array namespace `xp` (given by `Ops`)."""

    xp: Any = None
    device: Any = None

    if TYPE_CHECKING:  # provided by Ops

        def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array: ...
        def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array: ...
        def assign(self, dst: Array, src: Array) -> None: ...
        def activation_forward(self, act: Any, u: Array, in_place: bool = False) -> Array: ...
        def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array: ...

    def full(self, shape: tuple[int, ...], value: float, dtype: Any) -> Array:
        return self.xp.full(shape, value, dtype=dtype, device=self.device)

    def pad2d(self, x: Array, pads: tuple[int, int, int, int], value: float = 0.0) -> Array:
        """x (n, h, w, c) → (n, top + h + bottom, left + w + right, c), the border filled with `value`."""
        if not any(pads):
            return x
        top, bottom, left, right = pads
        n, h, w, c = x.shape
        out = self.full((n, top + h + bottom, left + w + right, c), value, x.dtype)
        out[:, top : top + h, left : left + w, :] = x
        return out

    def im2col(
        self, x: Array, size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]
    ) -> Array:
        """The patch matrix of a kh×kw window: x (n, h, w, c) → (n, oh, ow, kh·kw·c).

        A patch's entries run over (i, j, channel), the order of a (kh, kw, c, f) kernel's rows, so
        one GEMM with the kernel as a (kh·kw·c, f) matrix computes the convolution.
        """
        xp = self.xp
        (kh, kw), (sh, sw) = size, strides
        xpad = self.pad2d(x, pads)
        n, hp, wp, c = xpad.shape
        oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        parts = [_window(xpad, i, j, oh, ow, sh, sw) for i in range(kh) for j in range(kw)]
        return xp.reshape(xp.stack(parts, axis=3), (n, oh, ow, kh * kw * c))

    def col2im(
        self,
        cols: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> Array:
        """The adjoint of `im2col`: cols (n, oh, ow, kh·kw·c) summed onto the pixels they came from → (n, h, w, c)."""
        xp = self.xp
        (kh, kw), (sh, sw) = size, strides
        n, h, w, c = x_shape
        top, bottom, left, right = pads
        _, oh, ow, _ = cols.shape
        parts = xp.reshape(cols, (n, oh, ow, kh * kw, c))
        dxp = self.zeros((n, top + h + bottom, left + w + right, c), cols.dtype)
        for t in range(kh * kw):
            i, j = divmod(t, kw)
            rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
            dxp[:, rows, columns, :] += parts[:, :, :, t, :]
        return dxp[:, top : top + h, left : left + w, :] if any(pads) else dxp

    def conv2d_forward(
        self,
        x: Array,
        kernel: Array,
        bias: Array | None,
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_ctx: bool = True,
    ) -> tuple[Array, Any]:
        """u = x ⋆ kernel + bias (cross-correlation, as Keras): x (n, h, w, c), kernel (kh, kw, c, f), bias (f,).

        -> (u (n, oh, ow, f), ctx): ctx is what `conv2d_backward` needs (here the patch matrix);
        need_ctx=False (inference) lets a backend work in batch slices and return ctx None.
        """
        xp = self.xp
        kh, kw, _, f = kernel.shape
        cols = self.im2col(x, (kh, kw), strides, pads)
        n, oh, ow, k = cols.shape
        u = xp.reshape(self.matmul(xp.reshape(cols, (n * oh * ow, k)), xp.reshape(kernel, (k, f))), (n, oh, ow, f))
        return (u if bias is None else u + bias), cols

    def conv2d_backward(
        self,
        du: Array,
        ctx: Any,
        kernel: Array,
        x_shape: tuple[int, ...],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_input_grad: bool,
    ) -> tuple[Array, Array, Array | None]:
        """From ∂L/∂u (n, oh, ow, f): (∂L/∂kernel (kh, kw, c, f), ∂L/∂bias (f,), ∂L/∂x (n, h, w, c) or None).

        Three GEMMs with the patch matrix P (n·oh·ow, kh·kw·c): ∂kernel = Pᵀ du, ∂P = du kernelᵀ,
        and col2im sums ∂P back onto the input pixels.
        """
        xp = self.xp
        kh, kw, _, f = kernel.shape
        cols = ctx
        n, oh, ow, k = cols.shape
        du2 = xp.reshape(du, (n * oh * ow, f))
        dkernel = xp.reshape(self.matmul(xp.reshape(cols, (n * oh * ow, k)).T, du2), kernel.shape)
        dbias = xp.sum(du2, axis=0)
        if not need_input_grad:
            return dkernel, dbias, None
        dcols = xp.reshape(self.matmul(du2, xp.reshape(kernel, (k, f)).T), (n, oh, ow, k))
        return dkernel, dbias, self.col2im(dcols, x_shape, (kh, kw), strides, pads)

    def conv2d_backward_into(self, grads: tuple[Array, Array | None], *args: Any) -> Array | None:
        """`conv2d_backward(*args)` with ∂L/∂kernel and ∂L/∂bias written into grads = (kernel's, bias's or
        None); returns ∂L/∂x or None. CuPy computes them there, with no copies."""
        dk, db, dx = self.conv2d_backward(*args)
        self.assign(grads[0], dk)
        if grads[1] is not None:
            self.assign(grads[1], db)
        return dx

    def max_pool_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_arg: bool = True,
    ) -> tuple[Array, Array]:
        """y = the max of each window: x (n, h, w, c) → (y (n, oh, ow, c), argmax (n, oh, ow, c) int8/int32).

        argmax is the window position t = i·kw + j of the first maximum; padding never wins.
        need_arg=False (inference) lets a backend skip the argmax and return None for it.
        """
        xp = self.xp
        (kh, kw), (sh, sw) = size, strides
        xpad = self.pad2d(x, pads, -math.inf)
        oh, ow = (xpad.shape[1] - kh) // sh + 1, (xpad.shape[2] - kw) // sw + 1
        y = _window(xpad, 0, 0, oh, ow, sh, sw) * 1.0
        arg = self.zeros(tuple(y.shape), xp.int8 if kh * kw <= 127 else xp.int32)
        for t in range(1, kh * kw):
            v = _window(xpad, *divmod(t, kw), oh, ow, sh, sw)
            arg = xp.where(v > y, t, arg)
            y = xp.maximum(y, v)  # maximum, not where: a NaN input stays NaN
        return y, arg

    def max_pool_backward(
        self,
        dy: Array,
        arg: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> Array:
        """∂L/∂x (n, h, w, c): each window's ∂L/∂y goes to its argmax pixel (summed where windows overlap)."""
        xp = self.xp
        (kh, kw), (sh, sw) = size, strides
        n, h, w, c = x_shape
        top, bottom, left, right = pads
        oh, ow = dy.shape[1], dy.shape[2]
        dxp = self.zeros((n, top + h + bottom, left + w + right, c), dy.dtype)
        for t in range(kh * kw):
            i, j = divmod(t, kw)
            rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
            dxp[:, rows, columns, :] += xp.where(arg == t, dy, 0.0)
        return dxp[:, top : top + h, left : left + w, :] if any(pads) else dxp

    def max_pool_relu_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        relu: Any,
        need_arg: bool = True,
    ) -> tuple[Array, Any]:
        """relu(max pool(x)), which equals max pool(relu(x)): -> (y (n, oh, ow, c), ctx or None).

        relu: the built-in relu activation. ctx is what `max_pool_relu_backward` needs.
        """
        y, arg = self.max_pool_forward(x, size, strides, pads, need_arg)
        y = self.activation_forward(relu, y, in_place=True)  # y is a new array
        return y, ((arg, y) if need_arg else None)

    def max_pool_relu_backward(
        self,
        dy: Array,
        ctx: Any,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        relu: Any,
    ) -> Array:
        """∂L/∂x of `max_pool_relu_forward`: relu'(y) at each window, then to its argmax pixel."""
        arg, y = ctx
        return self.max_pool_backward(self.activation_backward(relu, y, y, dy), arg, x_shape, size, strides, pads)

    def avg_pool_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        inv_count: Array | float,
    ) -> Array:
        """y = the mean of each window: x (n, h, w, c) → (n, oh, ow, c).

        inv_count: 1 / (pixels of the window inside the image), a float or (oh, ow, 1) (padding="same",
        where Keras, like TensorFlow, averages over the real pixels only).
        """
        (kh, kw), (sh, sw) = size, strides
        xpad = self.pad2d(x, pads)
        oh, ow = (xpad.shape[1] - kh) // sh + 1, (xpad.shape[2] - kw) // sw + 1
        total = _window(xpad, 0, 0, oh, ow, sh, sw) * 1.0
        for t in range(1, kh * kw):
            total = total + _window(xpad, *divmod(t, kw), oh, ow, sh, sw)
        return total * inv_count

    def avg_pool_backward(
        self,
        dy: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        inv_count: Array | float,
    ) -> Array:
        """∂L/∂x (n, h, w, c): each window spreads ∂L/∂y · inv_count over its pixels."""
        (kh, kw), (sh, sw) = size, strides
        n, h, w, c = x_shape
        top, bottom, left, right = pads
        oh, ow = dy.shape[1], dy.shape[2]
        share = dy * inv_count
        dxp = self.zeros((n, top + h + bottom, left + w + right, c), dy.dtype)
        for t in range(kh * kw):
            i, j = divmod(t, kw)
            rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
            dxp[:, rows, columns, :] += share
        return dxp[:, top : top + h, left : left + w, :] if any(pads) else dxp


def _window(xpad: Array, i: int, j: int, oh: int, ow: int, sh: int, sw: int) -> Array:
    """The (n, oh, ow, c) pixels at offset (i, j) of every window: xpad[:, i + sh·y, j + sw·x, :]."""
    return xpad[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
