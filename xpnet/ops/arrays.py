"""`xpnet.ops` array creation, shapes, joining and indexing, and dtype conversion, each op with its VJP.

Creation functions use the process's default backend (the recording's inside a training step);
integer results (one_hot indices, shape) have no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tape import Tensor, active
from ..variables import Variable
from .core import (
    FLOATX,
    Array,
    Out,
    _apply,
    _axes,
    _default_xp,
    _dtype,
    _leaf_or_value,
    _namespace,
    _shape_of,
    _xp_for,
    unwrap,
)


def ones(shape: Any, dtype: Any = None) -> Array:
    """An array of ones: shape int or tuple; dtype float32 unless given."""
    xp = _default_xp()
    return xp.ones(shape, dtype=_dtype(xp, dtype))


def zeros(shape: Any, dtype: Any = None) -> Array:
    """An array of zeros: shape int or tuple; dtype float32 unless given."""
    xp = _default_xp()
    return xp.zeros(shape, dtype=_dtype(xp, dtype))


def full(shape: Any, fill_value: Any, dtype: Any = None) -> Array:
    """An array filled with `fill_value` (a number); dtype float32 unless given."""
    xp = _default_xp()
    return xp.full(shape, fill_value, dtype=_dtype(xp, dtype))


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Array:
    """Evenly spaced values in [start, stop): int32 for integer arguments, else float32 (Keras's rule)."""
    xp = _default_xp()
    whole = all(isinstance(v, (int, np.integer)) for v in (start, stop, step) if v is not None)
    kind = _dtype(xp, dtype, "int32" if whole else FLOATX)
    if stop is None:  # arange(stop) and arange(stop, step=s), as Keras
        start, stop = 0, start
    return xp.arange(start, stop, step, dtype=kind)


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> Array:
    """(N, M) with ones on diagonal k; float32 unless given."""
    xp = _default_xp()
    rows, cols = xp.arange(N), xp.arange(N if M is None else M)
    return xp.astype(rows[:, None] + k == cols[None, :], _dtype(xp, dtype))


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = None) -> Array:
    """Integer labels x (any shape) → one-hot rows (shape + (num_classes,) with axis=-1); float32 unless given."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"one_hot: num_classes must be a positive integer, received {num_classes!r}")
    x = _leaf_or_value(x, None)
    tape = active()
    xp = tape.xp if tape is not None else _namespace([x])
    labels = x.data if isinstance(x, Tensor) else xp.asarray(x)
    classes = xp.arange(int(num_classes), dtype=labels.dtype)
    out = xp.astype(labels[..., None] == classes, _dtype(xp, dtype))
    return out if axis in (-1, out.ndim - 1) else xp.moveaxis(out, -1, axis)


def _reshape(xp: Any, a: Array, newshape: tuple[int, ...]) -> Out:
    shape = _shape_of(a)
    return xp.reshape(a, newshape), lambda g, n: (xp.reshape(g, shape),)


def reshape(x: Any, newshape: Any) -> Any:
    """x with shape `newshape` (one entry may be -1)."""
    shape = (int(newshape),) if isinstance(newshape, (int, np.integer)) else tuple(int(d) for d in newshape)
    return _apply(_reshape, x, newshape=shape)


def _transpose(xp: Any, a: Array, axes: tuple[int, ...] | None) -> Out:
    perm = tuple(range(a.ndim))[::-1] if axes is None else tuple(d % a.ndim for d in axes)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return xp.transpose(a, perm), lambda g, n: (xp.transpose(g, inverse),)


def transpose(x: Any, axes: Any = None) -> Any:
    """x with its axes permuted (reversed when axes is None)."""
    return _apply(_transpose, x, axes=None if axes is None else tuple(axes))


def expand_dims(x: Any, axis: int) -> Any:
    """x with a new axis of length 1 at `axis`."""
    shape = list(_shape_of(unwrap(x)))
    k = axis if axis >= 0 else len(shape) + 1 + axis
    if not 0 <= k <= len(shape):
        raise ValueError(f"expand_dims: axis {axis} is out of range for an array of {len(shape)} dimensions")
    shape.insert(k, 1)
    return _apply(_reshape, x, newshape=tuple(shape))


def squeeze(x: Any, axis: Any = None) -> Any:
    """x without its axes of length 1 (only `axis`, when given; it must have length 1)."""
    shape = _shape_of(unwrap(x))
    drop = set(_axes(axis, len(shape))) if axis is not None else {i for i, d in enumerate(shape) if d == 1}
    for i in drop:
        if shape[i] != 1:
            raise ValueError(f"squeeze: axis {i} has length {shape[i]}, not 1 (shape {shape})")
    return _apply(_reshape, x, newshape=tuple(d for i, d in enumerate(shape) if i not in drop))


def _concatenate(xp: Any, *parts: Array, axis: int) -> Out:
    sizes = [p.shape[axis] for p in parts]
    ends = np.cumsum(sizes).tolist()

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        out, start = [], 0
        for end, wanted in zip(ends, n, strict=True):
            index = [slice(None)] * g.ndim
            index[axis] = slice(start, end)
            out.append(g[tuple(index)] if wanted else None)
            start = end
        return out

    return xp.concatenate(parts, axis=axis), vjp


def concatenate(xs: Sequence[Any], axis: int = 0) -> Any:
    """The arrays of `xs` joined along an existing axis."""
    return _apply(_concatenate, *xs, axis=axis)


def _stack(xp: Any, *parts: Array, axis: int) -> Out:
    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        return [xp.take(g, i, axis=axis) if wanted else None for i, wanted in enumerate(n)]

    return xp.stack(parts, axis=axis), vjp


def stack(x: Sequence[Any], axis: int = 0) -> Any:
    """The arrays of `x` (one shape) joined along a new axis."""
    return _apply(_stack, *x, axis=axis)


def _take(xp: Any, a: Array, indices: Array, axis: int | None) -> Out:
    shape = _shape_of(a)
    flat = a if axis is not None else xp.reshape(a, (-1,))
    ax = 0 if axis is None else axis % a.ndim
    out = xp.take(flat, indices, axis=ax)

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        # a scatter-add; on a device, a product with one-hot rows (no atomics: the same sums every run)
        size = flat.shape[ax]
        if isinstance(indices, (int, np.integer)):  # one index (the axis is dropped): g goes back to that slice
            hot1 = xp.astype(xp.arange(size) == int(indices) % size, g.dtype)
            along = [1] * flat.ndim
            along[ax] = size
            return (xp.reshape(xp.expand_dims(g, ax) * xp.reshape(hot1, tuple(along)), shape), None)
        idx = xp.reshape(indices, (-1,)) % size
        rest = [d for i, d in enumerate(flat.shape) if i != ax]
        gm = xp.moveaxis(g, tuple(range(ax, ax + indices.ndim)), tuple(range(indices.ndim)))
        gm = xp.reshape(gm, (idx.shape[0], -1))
        if xp is np:  # NumPy: an exact, in-order scatter-add, without the (indices × size) one-hot matrix
            d = np.zeros((size, gm.shape[1]), dtype=g.dtype)
            np.add.at(d, idx, gm)
        else:
            hot = xp.astype(idx[:, None] == xp.arange(size, dtype=idx.dtype)[None, :], g.dtype)
            d = xp.matmul(hot.T, gm)
        d = xp.reshape(d, (size, *rest))
        d = xp.moveaxis(d, 0, ax)
        return (xp.reshape(d, shape), None)

    return out, vjp


def take(x: Any, indices: Any, axis: int | None = None) -> Any:
    """Elements of x at integer `indices` along `axis` (of the flattened x when axis is None)."""
    return _apply(_take, x, indices, axis=axis)


def _getitem(xp: Any, a: Array, key: Any) -> Out:
    shape, dtype = _shape_of(a), a.dtype

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        d = xp.zeros(shape, dtype=dtype)
        d[key] = g
        return (d,)

    return a[key], vjp


def getitem(x: Any, key: Any) -> Any:
    """x[key] for basic keys (ints, slices, None, ...); use `take` for integer-array indices."""
    parts = key if isinstance(key, tuple) else (key,)
    for k in parts:
        if not (k is None or k is Ellipsis or isinstance(k, (int, slice, np.integer))):
            raise TypeError(
                f"indexing a tensor with {type(k).__name__} is not supported; use ops.take(x, indices, axis) "
                "for integer arrays and ops.where for masks"
            )
    return _apply(_getitem, x, key=key)


def _cast(xp: Any, a: Array, dtype: Any) -> Out:
    source = a.dtype
    return xp.astype(a, dtype), lambda g, n: (xp.astype(g, source),)


def cast(x: Any, dtype: Any) -> Any:
    """x converted to `dtype` ('float32', 'int32', ...); float-to-float casts pass the gradient through."""
    raw = unwrap(x)
    xp = _xp_for(raw)
    kind = _dtype(xp, dtype)
    if np.dtype(kind).kind != "f":
        return xp.astype(raw, kind)
    return _apply(_cast, x, dtype=kind)


def convert_to_tensor(x: Any, dtype: Any = None, sparse: Any = None) -> Any:
    """x as an array of the current backend (a recorded tensor passes through); floats become float32."""
    if sparse:
        raise ValueError("convert_to_tensor: sparse tensors are not supported, received sparse=True")
    if isinstance(x, (Tensor, Variable)) and dtype is None:
        return _leaf_or_value(x, active())
    if isinstance(x, (Tensor, Variable)):
        return cast(x, dtype)
    xp = _default_xp() if isinstance(x, (list, tuple, int, float, np.ndarray, np.generic)) else _xp_for(x)
    if dtype is None:
        host = np.asarray(x) if isinstance(x, (list, tuple, int, float)) else None
        if host is not None and host.dtype.kind == "f":
            dtype = FLOATX
        elif host is not None and host.dtype.kind == "i":
            dtype = "int32"
    return xp.asarray(x, dtype=None if dtype is None else _dtype(xp, dtype))


def convert_to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of x (a device read: keep it out of the training step)."""
    raw = unwrap(x)
    if isinstance(raw, np.ndarray):
        return np.array(raw)
    if hasattr(raw, "get"):
        return np.asarray(raw.get())
    return np.asarray(raw)


def shape(x: Any) -> tuple[int, ...]:
    """x's shape as a tuple of ints (no device read)."""
    return _shape_of(unwrap(x))
