"""CuPy image kernels of `CupyOps`: im2col/col2im, the convolution's GEMMs and max pooling, channels-last.

One thread per output element (Chainer's im2col_gpu / col2im_gpu); the CUDA C is in cuda_kernels.py.
Where a convolution's bias lies right after its kernel in the flat buffer, the patch matrix gets a
column of ones and one GEMM with [kernel; bias] adds the bias (and gives ∂bias as its last row).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Array, Ops
from .cuda_kernels import build_image_kernel


class CupyImages(Ops):  # pragma: no cover - needs a CUDA device
    """The image methods of `CupyOps` (which sets `xp` and `_kernels`)."""

    _kernels: dict[str, Any]

    def _geometry_args(
        self, shape: tuple[int, ...], size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]
    ) -> tuple[int, int, tuple[np.int32, ...]]:
        _, h, w, c = shape
        oh = (h + pads[0] + pads[1] - size[0]) // strides[0] + 1
        ow = (w + pads[2] + pads[3] - size[1]) // strides[1] + 1
        args = (h, w, c, oh, ow, size[0], size[1], strides[0], strides[1], pads[0], pads[2])
        return oh, ow, tuple(np.int32(a) for a in args)

    def im2col(
        self, x: Array, size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]
    ) -> Array:
        n, _, _, c = x.shape
        oh, ow, args = self._geometry_args(tuple(x.shape), size, strides, pads)
        out = self.xp.empty((n, oh, ow, size[0] * size[1] * c), dtype=x.dtype)
        self._image_kernel("im2col")(self.xp.ascontiguousarray(x), *args, out)
        return out

    def col2im(
        self,
        cols: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> Array:
        _, _, args = self._geometry_args(tuple(x_shape), size, strides, pads)
        out = self.xp.empty(tuple(x_shape), dtype=cols.dtype)
        self._image_kernel("col2im")(self.xp.ascontiguousarray(cols), *args, out)
        return out

    def conv2d_forward(
        self,
        x: Array,
        kernel: Array,
        bias: Array | None,
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_ctx: bool = True,
    ) -> tuple[Array, Any]:
        # where the bias lies right after the kernel (a layer's views of the flat buffer), the patches get
        # a column of ones and one GEMM with [kernel; bias] adds it: no separate add, and the backward's
        # Pᵀ du then gives ∂bias as its last row (ctx: the patches with that column)
        stacked = _stacked(self.xp, kernel, bias)
        if stacked is None or x.dtype != kernel.dtype:
            return super().conv2d_forward(x, kernel, bias, strides, pads, need_ctx)
        n, f = int(x.shape[0]), int(kernel.shape[-1])
        oh, ow, args = self._geometry_args(tuple(x.shape), tuple(kernel.shape[:2]), strides, pads)
        cols = self.xp.empty((n, oh, ow, stacked.shape[0]), dtype=x.dtype)
        self._image_kernel("im2col_one")(self.xp.ascontiguousarray(x), *args, cols)
        u = self.matmul(self.xp.reshape(cols, (n * oh * ow, stacked.shape[0])), stacked)
        return self.xp.reshape(u, (n, oh, ow, f)), cols

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
        if not _has_ones(ctx, kernel):
            return super().conv2d_backward(du, ctx, kernel, x_shape, strides, pads, need_input_grad)
        k, f = int(ctx.shape[-1]) - 1, int(kernel.shape[-1])
        du2 = self.xp.reshape(du, (-1, f))
        both = self.matmul(self.xp.reshape(ctx, (-1, k + 1)).T, du2)  # [∂kernel; ∂bias]
        dx = self._conv_input_grad(du2, kernel, x_shape, strides, pads) if need_input_grad else None
        return self.xp.reshape(both[:k], kernel.shape), both[k], dx

    def conv2d_backward_into(self, grads: tuple[Array, Array | None], *args: Any) -> Array | None:
        # ∂kernel = Pᵀ du by the GEMM straight into the gradient buffer, ∂bias summed there: no copies
        du, ctx, kernel, x_shape, strides, pads, need_input_grad = args
        dkernel, dbias = grads
        f = int(kernel.shape[-1])
        if not isinstance(ctx, self.xp.ndarray) or not dkernel.flags.c_contiguous or dkernel.shape != kernel.shape:
            return super().conv2d_backward_into(grads, *args)
        k = int(ctx.shape[-1])
        du2 = self.xp.reshape(du, (-1, f))
        if _has_ones(ctx, kernel):  # the patches' column of ones: ∂bias is the GEMM's last row
            target = _stacked(self.xp, dkernel, dbias)
            if target is None:
                return super().conv2d_backward_into(grads, *args)
            self.matmul(self.xp.reshape(ctx, (-1, k)).T, du2, target)
        else:
            self.matmul(self.xp.reshape(ctx, (-1, k)).T, du2, self.xp.reshape(dkernel, (k, f)))
            if dbias is not None:
                self.bias_grad(du2, dbias)
        return self._conv_input_grad(du2, kernel, x_shape, strides, pads) if need_input_grad else None

    def _conv_input_grad(
        self, du2: Array, kernel: Array, x_shape: tuple[int, ...], strides: tuple[int, int], pads: Any
    ) -> Array:
        """∂L/∂x (x_shape) from ∂L/∂u as (rows, f): ∂P = du kernelᵀ, summed onto the pixels by col2im."""
        kh, kw, c, f = (int(d) for d in kernel.shape)
        dcols = self.matmul(du2, self.xp.reshape(kernel, (kh * kw * c, f)).T)
        return self.col2im(dcols, x_shape, (kh, kw), strides, pads)  # col2im reads dcols as a flat buffer

    def max_pool_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_arg: bool = True,
    ) -> tuple[Array, Array]:
        n, _, _, c = x.shape
        oh, ow, args = self._geometry_args(tuple(x.shape), size, strides, pads)
        y = self.xp.empty((n, oh, ow, c), dtype=x.dtype)
        arg = self.xp.empty((n, oh, ow, c), dtype=np.int8 if size[0] * size[1] <= 127 else np.int32)
        t = x.dtype.type
        self._image_kernel("max_pool")(self.xp.ascontiguousarray(x), *args, t(-np.inf), False, y, arg)
        return y, arg

    def max_pool_relu_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        relu: Any,
        need_arg: bool = True,
    ) -> tuple[Array, Any]:
        # the relu inside the pooling kernel: one launch instead of two
        n, _, _, c = x.shape
        oh, ow, args = self._geometry_args(tuple(x.shape), size, strides, pads)
        y = self.xp.empty((n, oh, ow, c), dtype=x.dtype)
        arg = self.xp.empty((n, oh, ow, c), dtype=np.int8 if size[0] * size[1] <= 127 else np.int32)
        t = x.dtype.type
        self._image_kernel("max_pool")(self.xp.ascontiguousarray(x), *args, t(-np.inf), True, y, arg)
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
        # relu'(y) applied as each window's ∂L/∂y is gathered: one launch instead of two
        arg, y = ctx
        _, _, args = self._geometry_args(tuple(x_shape), size, strides, pads)
        out = self.xp.empty(tuple(x_shape), dtype=dy.dtype)
        dy, arg, y = (self.xp.ascontiguousarray(a) for a in (dy, arg, y))
        self._image_kernel("max_pool_grad")(dy, arg, y, *args, True, out)
        return out

    def max_pool_backward(
        self,
        dy: Array,
        arg: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> Array:
        _, _, args = self._geometry_args(tuple(x_shape), size, strides, pads)
        out = self.xp.empty(tuple(x_shape), dtype=dy.dtype)
        dy, arg = self.xp.ascontiguousarray(dy), self.xp.ascontiguousarray(arg)
        self._image_kernel("max_pool_grad")(dy, arg, dy, *args, False, out)  # dy stands in for the unread y
        return out

    def _image_kernel(self, name: str) -> Any:
        k = self._kernels.get(name)
        if k is None:
            k = self._kernels[name] = build_image_kernel(self.xp, name)
        return k


def _stacked(xp: Any, kernel: Array, bias: Array | None) -> Array | None:
    """[kernel as (k, f); bias (f,)] as one (k + 1, f) view where bias starts where kernel ends in one
    contiguous buffer (a layer's views of the flat parameter or gradient buffer), else None."""
    if bias is None or not isinstance(kernel, xp.ndarray) or not isinstance(bias, xp.ndarray):
        return None
    f = int(kernel.shape[-1]) if kernel.ndim else 0
    if (
        kernel.dtype != bias.dtype
        or bias.shape != (f,)
        or not (kernel.flags.c_contiguous and bias.flags.c_contiguous)
        or bias.data.ptr != kernel.data.ptr + kernel.nbytes
    ):
        return None
    base = kernel
    while isinstance(base.base, xp.ndarray):
        base = base.base
    if not base.flags.c_contiguous or base.dtype != kernel.dtype:
        return None
    start = (kernel.data.ptr - base.data.ptr) // kernel.itemsize
    end = start + kernel.size + f
    if start < 0 or end > base.size:
        return None
    return xp.reshape(xp.reshape(base, (-1,))[start:end], (-1, f))


def _has_ones(ctx: Any, kernel: Array) -> bool:
    """Whether conv ctx is `conv2d_forward`'s patches with the column of ones (one more than kernel's k)."""
    return getattr(ctx, "ndim", 0) == 4 and int(ctx.shape[-1]) == int(np.prod(kernel.shape[:3])) + 1
