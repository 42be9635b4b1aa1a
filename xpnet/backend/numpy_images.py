"""NumPy image layouts for the convolution and pooling kernels of `NumpyOps` (xpnet/backend/numpy_ops.py).

Views instead of copies (`_nhwc`: (c, n, h, w) seen as (n, h, w, c)), arrays laid out like others,
products split by columns where OpenBLAS runs them faster, 2×2 max pooling by halves, and the
"wide" layout: a padded row buffer that a convolution's output and the next layer's input share.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from . import _jit


def _nhwc(a: np.ndarray) -> np.ndarray:
    """A (c, n, h, w) array seen as (n, h, w, c): no copy."""
    return a.transpose(1, 2, 3, 0)


def _empty_like_layout(shape: tuple[int, ...], like: np.ndarray, dtype: Any, zero: bool) -> np.ndarray:
    """An array of `shape` whose axes lie in memory in the order of `like`'s (largest stride first)."""
    order = sorted(range(len(shape)), key=lambda a: -like.strides[a])
    alloc = np.zeros if zero else np.empty
    return alloc([shape[a] for a in order], dtype).transpose(np.argsort(order))


# OpenBLAS (1 thread) ran LeNet's first-layer products, (6, 26) @ (26, 28,672) and (25, 6) @
# (6, 28,672), 1.8-2.6x faster in blocks of 4,096 columns than whole; the second layer's 8,064
# columns gained nothing from blocks (some sizes lost up to 40 %). So only long products are split.
_GEMM_COLUMNS = 4096
_GEMM_SPLIT_FROM = 4 * _GEMM_COLUMNS


def _matmul_by_columns(a: np.ndarray, b: np.ndarray, out: np.ndarray, matmul: Any = np.matmul) -> np.ndarray:
    """out = a @ b, (m, k) @ (k, n) → (m, n): in blocks of `_GEMM_COLUMNS` columns of b when n is long.
    matmul: the backend's product (`NumpyOps.cblas.matmul`)."""
    step = _GEMM_COLUMNS if b.shape[1] >= _GEMM_SPLIT_FROM else b.shape[1]
    for lo in range(0, b.shape[1], step):
        matmul(a, b[:, lo : lo + step], out=out[:, lo : lo + step])
    return out


def _matmul_nt_by_blocks(a: np.ndarray, b: np.ndarray, matmul: Any = np.matmul) -> np.ndarray:
    """a @ bᵀ for a (m, k), b (n, k) → (m, n): summed over blocks of k columns when k is long.

    The weight gradient of LeNet's first layer, (26, 28,672) @ (28,672, 6), ran 1.4x faster (467 →
    330 µs, one thread) as 7 products over blocks of 4,096 columns than as one: the same split as
    `_matmul_by_columns`, here along the summed axis (which changes the rounding of the sum).
    """
    k = a.shape[1]
    if k < _GEMM_SPLIT_FROM:
        return matmul(a, b.T)
    out = matmul(a[:, :_GEMM_COLUMNS], b[:, :_GEMM_COLUMNS].T)
    part = np.empty_like(out)
    for lo in range(_GEMM_COLUMNS, k, _GEMM_COLUMNS):
        out += matmul(a[:, lo : lo + _GEMM_COLUMNS], b[:, lo : lo + _GEMM_COLUMNS].T, out=part)
    return out


def _halving(size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]) -> bool:
    """The common pool: 2×2 windows, stride 2, no padding."""
    return tuple(size) == (2, 2) and tuple(strides) == (2, 2) and not any(pads)


class _Halves:
    """The winners of a separable 2×2 max: `right` (n, 2·oh, ow, c) of each column pair, `lower` (n, oh, ow, c)."""

    def __init__(self, right: np.ndarray, lower: np.ndarray) -> None:
        self.right, self.lower = right, lower

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.lower.shape)


def _max_pool_2x2(x: np.ndarray, need_arg: bool) -> tuple[np.ndarray, _Halves | None]:
    """y = the max of each 2×2 window of x (n, h, w, c), as a max over column pairs, then over row pairs.

    Two passes instead of three, and the second one runs over contiguous rows. The winners it
    records give the generic code's first argmax in row-major order: a pair goes to its second
    element only when that is strictly greater, and row 0 holds its row's first maximum.
    Odd last rows and columns are left out (floor), as in the generic code.
    """
    oh, ow = x.shape[1] // 2, x.shape[2] // 2
    left, right = x[:, : 2 * oh, 0 : 2 * ow : 2], x[:, : 2 * oh, 1 : 2 * ow : 2]
    rows = np.maximum(left, right)  # (n, 2·oh, ow, c), in x's memory order
    upper, lower = rows[:, 0::2], rows[:, 1::2]
    y = np.maximum(upper, lower)
    if not need_arg:
        return y, None
    return y, _Halves(np.greater(right, left), np.greater(lower, upper))


def _max_pool_2x2_backward(dy: np.ndarray, arg: _Halves, x_shape: tuple[int, ...]) -> np.ndarray:
    """∂L/∂x (n, h, w, c) of `_max_pool_2x2`: dy to the winning row of each pair, then to the winning column."""
    n, h, w, c = x_shape
    oh, ow = dy.shape[1], dy.shape[2]
    drows = _empty_like_layout((n, 2 * oh, ow, c), arg.right, dy.dtype, zero=False)
    # subtracting the lower row's share leaves dy or exactly 0: no rounding
    np.multiply(dy, arg.lower, out=drows[:, 1::2])
    np.subtract(dy, drows[:, 1::2], out=drows[:, 0::2])
    ragged = (h, w) != (2 * oh, 2 * ow)
    dx = _empty_like_layout((n, h, w, c), arg.right, dy.dtype, zero=ragged)
    np.multiply(drows, arg.right, out=dx[:, : 2 * oh, 1 : 2 * ow : 2])
    np.subtract(drows, dx[:, : 2 * oh, 1 : 2 * ow : 2], out=dx[:, : 2 * oh, 0 : 2 * ow : 2])
    return dx


def _wide_base(x: np.ndarray) -> np.ndarray | None:
    """The (c, n, h, wp) array behind x (n, h, w, c) when x is its `[..., :w]` seen as NHWC, else None.

    That is the layout of the stride-1 convolution's output (`NumpyOps.conv2d_forward`) and of the
    wide pooling below: channels-first rows of wp ≥ w pixels, the last wp − w of them not part of x.
    The check reads only shapes, strides and addresses, so any array in this layout qualifies and
    nothing outside the owning array is ever touched.
    """
    base = x.base
    if x.ndim != 4 or not isinstance(base, np.ndarray) or not base.flags.c_contiguous or base.dtype != x.dtype:
        return None
    n, h, w, c = x.shape
    e = x.itemsize
    row = x.strides[1]
    if row % e or row // e < w or x.strides[2] != e or base.size % (c * n * h) or base.size // (c * n * h) != row // e:
        return None
    wp = row // e
    if x.strides[0] != h * row or x.strides[3] != n * h * row:
        return None
    if x.ctypes.data != base.ctypes.data:
        return None
    return base.reshape(c, n, h, wp)


# Wide gradients whose extra columns are known to be 0, by id (weak: an entry dies with its array,
# so a reused id never matches another array)
_ZEROED_EXTRA: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


class _WideHalves:
    """The winners of `_max_pool_2x2_wide` over a (c, n, h, wp) buffer whose first w columns are the input:
    `right` (c·n·h·wp/2,) of each column pair, `lower` (c·n·h/2, wp/2) of each row pair."""

    def __init__(self, right: np.ndarray, lower: np.ndarray, wide_shape: tuple[int, int, int, int], w: int) -> None:
        self.right, self.lower, self.wide_shape, self.w = right, lower, wide_shape, w
        self.positive: np.ndarray | None = None  # (c·n·h/2, wp/2): relu'(y), when a relu follows the pool

    @property
    def shape(self) -> tuple[int, ...]:
        c, n, h, _ = self.wide_shape
        return (n, h // 2, self.w // 2, c)


def _max_pool_2x2_wide(
    x: np.ndarray, wide: np.ndarray, need_arg: bool, kernels: Any, relu: bool = False
) -> tuple[np.ndarray, _WideHalves | None]:
    """`_max_pool_2x2` over the whole (c, n, h, wp) buffer behind x: the same numbers and winners.

    Column pairs are the even and odd elements of the flat buffer (wp is even, so a pair never
    spans two rows): one 1-D pass of c·n·h·wp/2 pairs, no per-row loop. The extra columns are
    pooled too and never read; with an odd w the last real column pairs with an extra one and
    falls outside the (floored) output, as in the generic code. The result is again wide:
    (c, n, h/2, wp/2) behind an (n, h/2, w//2, c) view, so a following 2×2 pool takes this path
    too and the backward pass hands a wide ∂L/∂x to the convolution below. With numba's `kernels`
    both passes (and a following relu: `relu=True`) run as one compiled call.
    """
    c, n, h, wp = wide.shape
    if kernels is not None:
        pairs = np.empty(wide.size // 2, wide.dtype)
        right = np.empty(wide.size // 2, bool)
        pooled = np.empty((c, n, h // 2, wp // 2), wide.dtype)
        lower = np.empty((c * n * h // 2, wp // 2), bool)
        positive = np.empty_like(lower) if relu else lower[:0]
        kernels.pool2x2_forward(
            wide.reshape(-1), wp, pairs, right, pooled.reshape(-1), lower.reshape(-1), positive.reshape(-1), relu
        )
        halves = _WideHalves(right, lower, (c, n, h, wp), x.shape[2]) if need_arg else None
        if halves is not None and relu:
            halves.positive = positive
        return _nhwc(pooled[..., : x.shape[2] // 2]), halves
    flat = wide.reshape(-1)
    left, right = flat[0::2], flat[1::2]
    rows = np.maximum(left, right).reshape(c * n * h // 2, 2, wp // 2)
    upper, lower = rows[:, 0], rows[:, 1]
    y = np.maximum(upper, lower)
    view = _nhwc(y.reshape(c, n, h // 2, wp // 2)[..., : x.shape[2] // 2])
    if not need_arg:
        return view, None
    return view, _WideHalves(np.greater(right, left), np.greater(lower, upper), (c, n, h, wp), x.shape[2])


def _max_pool_2x2_wide_backward(dy: np.ndarray, arg: _WideHalves, kernels: Any) -> np.ndarray:
    """∂L/∂x of `_max_pool_2x2_wide` as an (n, h, w, c) view of a (c, n, h, wp) buffer whose extra columns are 0."""
    c, n, h, wp = arg.wide_shape
    dyw = np.zeros((c, n, h // 2, wp // 2), dy.dtype)
    dyw[..., : arg.w // 2] = dy.transpose(3, 0, 1, 2)
    if kernels is not None and dy.dtype in _jit.DTYPES:
        dx = np.empty((c, n * h * wp), dy.dtype)
        positive = arg.lower if arg.positive is None else arg.positive  # read only with a relu
        drows = np.empty(c * n * h * wp // 2, dy.dtype)
        lower, relu = arg.lower.reshape(-1), arg.positive is not None
        kernels.pool2x2_backward(
            dyw.reshape(-1), wp // 2, arg.right, lower, positive.reshape(-1), relu, drows, dx.reshape(-1)
        )
        _ZEROED_EXTRA[id(dx)] = dx
        return _nhwc(dx.reshape(c, n, h, wp)[..., : arg.w])
    dyw2 = dyw.reshape(c * n * h // 2, wp // 2)
    if arg.positive is not None:
        np.multiply(dyw2, arg.positive, out=dyw2)
    drows = np.empty((c * n * h // 2, 2, wp // 2), dy.dtype)
    # subtracting the winner's share leaves dy or exactly 0: no rounding (as in `_max_pool_2x2_backward`)
    np.multiply(dyw2, arg.lower, out=drows[:, 1])
    np.subtract(dyw2, drows[:, 1], out=drows[:, 0])
    dx = np.empty((c, n * h * wp), dy.dtype)
    d, flat = drows.reshape(-1), dx.reshape(-1)
    np.multiply(d, arg.right, out=flat[1::2])
    np.subtract(d, flat[1::2], out=flat[0::2])
    _ZEROED_EXTRA[id(dx)] = dx  # dyw's extra columns were 0, so dx's are: the conv below need not zero them
    return _nhwc(dx.reshape(c, n, h, wp)[..., : arg.w])


class _WideCtx:
    """What a stride-1 convolution's backward pass needs: the geometry and the patch matrix (until used)."""

    def __init__(self, g: _Wide, cols: np.ndarray) -> None:
        self.g = g
        self.cols: np.ndarray | None = cols


class _Wide:
    """Geometry of the stride-1 convolution on a channels-first padded buffer (see `NumpyOps.conv2d_forward`)."""

    def __init__(self, n: int, h: int, w: int, c: int, kh: int, kw: int, top: int, hp: int, left: int, wp: int) -> None:
        self.n, self.h, self.w, self.c, self.kh, self.kw = n, h, w, c, kh, kw
        self.top, self.hp, self.left, self.wp = top, hp, left, wp
        self.oh, self.ow = hp - kh + 1, wp - kw + 1
        self.span = n * hp * wp  # one channel of the padded batch
        # slack after the last channel: the last windows' extra columns and the col2im shifts stay inside
        self.buffer_size = c * self.span + (kh - 1) * wp + kw

    def interior(self, buf: np.ndarray) -> np.ndarray:
        """The (c, n, h, w) image pixels inside the padded buffer."""
        grid = buf[: self.c * self.span].reshape(self.c, self.n, self.hp, self.wp)
        return grid[:, :, self.top : self.top + self.h, self.left : self.left + self.w]
