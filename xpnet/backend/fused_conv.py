"""The convolution and 2×2 pooling calls of a NumPy training step bound once to buffers (a replayed step).

The same arithmetic as `NumpyOps.conv2d_forward` / `conv2d_backward` (stride 1, its channels-first
"wide" layout) and `max_pool_relu_forward` / `max_pool_relu_backward` (2×2, stride 2, on that
layout), in the same order, into the recorded results' memory. What those methods take fresh
each step (the padded copy of the input, the weights with the bias row, the scratch of the GEMMs
and of the pooling) is made here once. The recorded context objects (`_WideCtx`, `_WideHalves`)
stay the ones the backward calls read: each replay writes their arrays in place. Where a call does
not have the layout assumed here, its binder returns None and the program re-runs it as recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _jit
from .fused_cpu import Bound, mirrors
from .numpy_images import (  # the layout and helpers of the methods bound here
    _GEMM_COLUMNS,
    _GEMM_SPLIT_FROM,
    _ZEROED_EXTRA,
    _halving,
    _matmul_by_columns,
    _Wide,
    _wide_base,
    _WideCtx,
    _WideHalves,
)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _writes_into(view: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The C-contiguous array that `view` (a recorded result) looks into, seen as `shape`, else None."""
    if not isinstance(view, np.ndarray):
        return None
    base = _root(view)
    if base.size != int(np.prod(shape)) or not base.flags.c_contiguous or not base.flags.writeable:
        return None
    return base.reshape(shape)


def bind_conv2d_forward(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`conv2d_forward(x, kernel, bias, (1, 1), pads, need_ctx)` -> (u, ctx or None): the patches of x's
    padded channels-first copy, then [W; b]ᵀ P into the recorded u (f, n·oh·wp): for training all images
    at once (the patches kept in ctx for ∂W), for inference a block of images at a time."""
    names = ("conv2d_forward", "_conv2d_wide")
    if len(args) not in (5, 6) or set(kwargs) - {"need_ctx"} or not all(mirrors(ops, n) for n in names):
        return None
    x, kernel, bias, strides, pads = args[:5]
    need_ctx = kwargs.get("need_ctx", args[5] if len(args) == 6 else True)
    view, ctx = result
    if tuple(strides) != (1, 1) or not isinstance(x, np.ndarray) or need_ctx is not (ctx is not None):
        return None
    shaped = _geometry(ops, x, kernel, bias, tuple(pads), ctx)
    if shaped is None:
        return None
    g, cols, group = shaped
    f, k, per = kernel.shape[3], g.kh * g.kw * g.c, g.oh * g.wp
    u = _writes_into(view, (f, g.n * per))
    if u is None or cols.shape != (k + (bias is not None), group * per):
        return None
    buf = np.zeros(g.buffer_size, x.dtype)  # the padding is never written: stays 0
    inner, xt = g.interior(buf), x.transpose(3, 0, 1, 2)
    e = buf.itemsize
    patches = as_strided(buf, (g.kh, g.kw, g.c, g.n, per), (g.wp * e, e, g.span * e, g.hp * g.wp * e, e))
    dst = cols[:k].reshape(g.kh, g.kw, g.c, group, per)
    blocks = [
        (dst[:, :, :, :m], patches[:, :, :, lo : lo + m], cols[:, : m * per], u[:, lo * per : (lo + m) * per])
        for lo in range(0, g.n, group)
        for m in [min(group, g.n - lo)]
    ]
    wt = np.empty((f, cols.shape[0]), x.dtype)  # [W; b]ᵀ, as `np.ascontiguousarray(weights.T)` lays it out
    kt, copyto, by_columns, matmul = kernel.reshape(k, f).T, np.copyto, _matmul_by_columns, ops.cblas.matmul

    def run() -> None:
        copyto(inner, xt)
        copyto(wt[:, :k], kt)
        if bias is not None:
            cols[k] = 1.0
            copyto(wt[:, k], bias)
        if ctx is not None:
            ctx.cols = cols  # an eager forward pass in between may have taken these patches over
        for d, src, c, out in blocks:
            copyto(d, src)
            by_columns(wt, c, out, matmul)

    return run


def _geometry(ops: Any, x: np.ndarray, kernel: np.ndarray, bias: Any, pads: tuple[int, ...], ctx: Any) -> Any:
    """(geometry, patch matrix, images per block) of a stride-1 convolution as `NumpyOps.conv2d_forward`
    runs it: training's (the context's, all images), inference's (a patch matrix of its own, the block
    `conv_block_bytes` allows), or None for inference in batch slices (a large batch)."""
    if ctx is not None:
        if not isinstance(ctx, _WideCtx) or ctx.cols is None or x.shape != (ctx.g.n, ctx.g.h, ctx.g.w, ctx.g.c):
            return None
        return ctx.g, ctx.cols, ctx.g.n
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    top, bottom, left, right = pads
    per_image = (kh * kw * c + 1) * (top + h + bottom) * (left + w + right) * x.itemsize
    if n > 2 * max(1, ops.conv_patch_bytes // per_image):
        return None
    per_image = (kh * kw * c + 1) * (top + h + bottom - kh + 1) * (left + w + right) * x.itemsize
    group = max(1, min(n, ops.conv_block_bytes // per_image))
    g = _Wide(n, h, w, c, kh, kw, top, top + h + bottom, left, left + w + right)
    cols = np.empty((kh * kw * c + (bias is not None), group * g.oh * g.wp), x.dtype)
    return g, cols, group


def bind_conv2d_backward(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`conv2d_backward(du, ctx, kernel, x_shape, (1, 1), pads, need_input_grad)` -> (∂W, ∂b, ∂x or None):
    ∂[W; b] = P δᵀ into the recorded buffer, ∂x as kh·kw shifted GEMMs into the recorded padded buffer."""
    if kwargs or len(args) != 7 or not mirrors(ops, "conv2d_backward") or not mirrors(ops, "gemm_sub"):
        return None
    du, ctx, kernel, _, strides, _, need_input_grad = args
    if not isinstance(ctx, _WideCtx) or ctx.cols is None or tuple(strides) != (1, 1):
        return None
    g, cols = ctx.g, ctx.cols
    f, k = kernel.shape[3], g.kh * g.kw * g.c
    dweights = _writes_into(result[0], (cols.shape[0], f))
    if dweights is None or not isinstance(du, np.ndarray):
        return None
    wide = _wide_grad(du, g, f)
    steps = [_weight_grad(cols, dweights, ops.cblas.matmul)]
    if cols.shape[0] == k:  # no bias row: the bias gradient is the column sums of δ
        steps.append(_bias_grad(result[1]))
    if need_input_grad:
        steps.append(_input_grad(ops, kernel, g, f, result[2]))
    if any(s is None for s in steps):
        return None

    def run() -> None:
        d2 = wide()
        for s in steps:
            s(d2)

    return run


def _wide_grad(du: np.ndarray, g: Any, f: int) -> Any:
    """A function that leaves δ in the (f, n, oh, wp) layout, extra columns 0, and returns it as (f, n·oh·wp)."""
    dwide = _wide_base(du)
    if dwide is not None and dwide.shape == (f, g.n, g.oh, g.wp) and dwide.flags.writeable:
        d2 = dwide.reshape(f, -1)
        if _ZEROED_EXTRA.get(id(dwide.base)) is dwide.base:  # the pool's backward leaves them 0
            return lambda: d2
        extra = dwide[:, :, :, g.ow :]

        def zeroed() -> np.ndarray:
            extra.fill(0.0)
            return d2

        return zeroed
    own = np.zeros((f, g.n, g.oh, g.wp), du.dtype)  # the extra columns: zero gradient, never written
    target, src, copyto, flat = own[:, :, :, : g.ow], du.transpose(3, 0, 1, 2), np.copyto, own.reshape(f, -1)

    def copied() -> np.ndarray:
        copyto(target, src)
        return flat

    return copied


def _weight_grad(cols: np.ndarray, out: np.ndarray, matmul: Any) -> Any:
    """`_matmul_nt_by_blocks(P, δ)` into `out` (k [+ 1], f) by `matmul`: one product, or a sum over column blocks."""
    columns, split = _GEMM_COLUMNS, _GEMM_SPLIT_FROM
    n = cols.shape[1]
    add = np.add
    if n < split:
        return lambda d2: matmul(cols, d2.T, out=out)
    part = np.empty_like(out)
    blocks = [(cols[:, lo : lo + columns], lo) for lo in range(columns, n, columns)]
    first = cols[:, :columns]

    def run(d2: np.ndarray) -> None:
        matmul(first, d2[:, :columns].T, out=out)
        for a, lo in blocks:
            add(out, matmul(a, d2[:, lo : lo + columns].T, out=part), out=out)

    return run


def _bias_grad(out: Any) -> Any:
    if not isinstance(out, np.ndarray):
        return None
    total = np.add.reduce
    return lambda d2: total(d2, axis=1, out=out)


def _input_grad(ops: Any, kernel: np.ndarray, g: Any, f: int, dx: Any) -> Any:
    """∂x: δ over every padded row, then per window offset ∂buf[c, shift + q] −= (−W(i, j)) δ[:, q]."""
    dbuf = _writes_into(dx, (g.buffer_size,))
    if dbuf is None:
        return None
    tall = np.zeros((f, g.n, g.hp * g.wp), dbuf.dtype)  # rows below oh are never written
    top, dtall = tall[:, :, : g.oh * g.wp], tall.reshape(f, g.span)
    neg = np.empty((g.kh, g.kw, f, g.c), dbuf.dtype)
    kt, e = kernel.transpose(0, 1, 3, 2), dbuf.itemsize
    rows = as_strided(dbuf, (g.c, g.buffer_size - (g.c - 1) * g.span), (g.span * e, e))
    offsets = [i * g.wp + j for i in range(g.kh) for j in range(g.kw)]
    stacked = neg.reshape(-1, f, g.c)
    copyto, negative, shifted, gemm_sub = np.copyto, np.negative, ops.cblas.shifted_gemm_sub, ops.gemm_sub
    shape = (f, g.n, g.oh * g.wp)

    def run(d2: np.ndarray) -> None:
        copyto(top, d2.reshape(shape))
        dbuf.fill(0)
        negative(kt, out=neg)
        if not shifted(stacked, dtall, dbuf, g.span, offsets):
            for t, o in enumerate(offsets):
                gemm_sub(neg[divmod(t, g.kw)], dtall, rows[:, o : o + g.span])

    return run


def bind_max_pool_relu_forward(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`max_pool_relu_forward(x, (2, 2), (2, 2), no pads, relu, need_arg)` on the wide layout -> (relu(max),
    winners or None): numba's one pass where the backend runs it, else NumPy's passes over column pairs,
    then row pairs; the winners into the recorded ones (training) or scratch (inference)."""
    if kwargs or len(args) != 6 or not mirrors(ops, "max_pool_relu_forward"):
        return None
    x, size, strides, pads, _, need_arg = args
    y, halves = result
    wide = _wide_base(x) if _halving(size, strides, pads) else None
    if wide is None or x.shape[1] % 2 or wide.shape[-1] % 2 or need_arg is not (halves is not None):
        return None
    if halves is not None and (not isinstance(halves, _WideHalves) or halves.positive is None):
        return None
    c, n, h, wp = wide.shape
    pooled = _writes_into(y, (c, n, h // 2, wp // 2))
    if pooled is None:
        return None
    lower: np.ndarray = np.empty((c * n * h // 2, wp // 2), bool) if halves is None else halves.lower
    right: np.ndarray = np.empty(wide.size // 2, bool) if halves is None else halves.right
    positive: Any = np.empty_like(lower) if halves is None else halves.positive  # inference: scratch
    src = wide.reshape(-1)
    kernels = ops.kernels if x.dtype in _jit.DTYPES else None
    if kernels is not None:
        pairs, forward = np.empty(wide.size // 2, wide.dtype), kernels.pool2x2_forward
        flat_y, flat_lower, flat_positive = pooled.reshape(-1), lower.reshape(-1), positive.reshape(-1)
        return lambda: forward(src, wp, pairs, right, flat_y, flat_lower, flat_positive, True)
    return _numpy_pool(src, pooled, (right, lower, positive) if halves is not None else None)


def _numpy_pool(src: np.ndarray, pooled: np.ndarray, winners: Any) -> Bound:
    """The NumPy passes of `_max_pool_2x2_wide` and the relu after it; with `winners` (right, lower,
    positive) also which of each pair won and where the result is positive (training)."""
    c, n, half, halfwp = pooled.shape
    left, odd = src[0::2], src[1::2]
    maxima = np.empty((c * n * half, 2, halfwp), src.dtype)
    upper, below, y2 = maxima[:, 0], maxima[:, 1], pooled.reshape(c * n * half, halfwp)
    maximum, greater, flat = np.maximum, np.greater, maxima.reshape(-1)
    if winners is None:

        def pool() -> None:
            maximum(left, odd, out=flat)
            maximum(upper, below, out=y2)
            maximum(pooled, 0.0, out=pooled)

        return pool
    right, lower, positive = winners
    shaped = positive.reshape(pooled.shape)

    def run() -> None:
        maximum(left, odd, out=flat)
        maximum(upper, below, out=y2)
        greater(odd, left, out=right)
        greater(below, upper, out=lower)
        maximum(pooled, 0.0, out=pooled)
        greater(pooled, 0.0, out=shaped)

    return run


def bind_max_pool_relu_backward(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`max_pool_relu_backward(dy, winners, ...)` on the wide layout -> ∂x as an (n, h, w, c) view of the
    recorded (c, n·h·wp) buffer, whose extra columns stay 0."""
    if kwargs or len(args) != 7 or not mirrors(ops, "max_pool_relu_backward"):
        return None
    dy, arg = args[0], args[1]
    if not isinstance(arg, _WideHalves) or arg.positive is None or not isinstance(dy, np.ndarray):
        return None
    c, n, h, wp = arg.wide_shape
    dx = _writes_into(result, (c, n * h * wp))
    if dx is None:
        return None
    dyw = np.zeros((c, n, h // 2, wp // 2), dy.dtype)  # the extra columns are never written: stay 0
    target, src, copyto = dyw[..., : arg.w // 2], dy.transpose(3, 0, 1, 2), np.copyto
    drows = np.empty(c * n * h * wp // 2, dy.dtype)
    kernels = ops.kernels if dy.dtype in _jit.DTYPES else None
    if kernels is not None:
        backward, flat_dyw, flat_dx = kernels.pool2x2_backward, dyw.reshape(-1), dx.reshape(-1)
        lower, positive = arg.lower.reshape(-1), arg.positive.reshape(-1)

        def fused() -> None:
            copyto(target, src)
            backward(flat_dyw, wp // 2, arg.right, lower, positive, True, drows, flat_dx)

        return fused
    dyw2, rows = dyw.reshape(c * n * h // 2, wp // 2), drows.reshape(c * n * h // 2, 2, wp // 2)
    positive = arg.positive.reshape(dyw2.shape)
    d, flat = drows, dx.reshape(-1)
    multiply, subtract = np.multiply, np.subtract

    def run() -> None:
        copyto(target, src)
        multiply(dyw2, positive, out=dyw2)
        multiply(dyw2, arg.lower, out=rows[:, 1])
        subtract(dyw2, rows[:, 1], out=rows[:, 0])
        multiply(d, arg.right, out=flat[1::2])
        subtract(d, flat[1::2], out=flat[0::2])

    return run


def bind_subtract(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`subtract_(p, g)`: p −= g in place (plain SGD on a layer's own weights)."""
    if kwargs or len(args) != 2 or not mirrors(ops, "subtract_") or not all(isinstance(a, np.ndarray) for a in args):
        return None
    p, g, subtract = args[0], args[1], np.subtract
    return lambda: subtract(p, g, out=p)


BINDERS = {
    "conv2d_forward": bind_conv2d_forward,
    "conv2d_backward": bind_conv2d_backward,
    "max_pool_relu_forward": bind_max_pool_relu_forward,
    "max_pool_relu_backward": bind_max_pool_relu_backward,
    "subtract_": bind_subtract,
}
