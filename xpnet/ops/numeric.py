"""`xpnet.ops` arithmetic, activations, comparisons, reductions and products, each with its VJP beside it.

Shapes follow NumPy's broadcasting; gradients of broadcast inputs are summed back to the input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..tape import Tensor
from .core import Array, Out, _apply, _axes, _expand, _shape_of, _unbroadcast, _xp_for, unwrap


def _add(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    return a + b, lambda g, n: (_unbroadcast(xp, g, sa) if n[0] else None, _unbroadcast(xp, g, sb) if n[1] else None)


def _add_into_sink(sink: Any, layer: Any, name: str, node: Tensor, i: int) -> Callable[[Array], None] | None:
    """u + b with u (batch, units) and weight b (units,): ∂L/∂b = Σ_rows g goes to the sink as a Dense's bias."""
    b, u = node.parents[i].data, unwrap(node.parents[1 - i])
    if b.ndim != 1 or getattr(u, "ndim", 0) != 2 or u.shape[1] != b.shape[0] or u.dtype != b.dtype:
        return None
    return lambda g: sink.column_sum(layer, name, g)


def add(x1: Any, x2: Any) -> Any:
    """x1 + x2, broadcast."""
    return _apply(_add, x1, x2)


def _subtract(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    return a - b, lambda g, n: (_unbroadcast(xp, g, sa) if n[0] else None, _unbroadcast(xp, -g, sb) if n[1] else None)


def subtract(x1: Any, x2: Any) -> Any:
    """x1 − x2, broadcast."""
    return _apply(_subtract, x1, x2)


def _multiply(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    return a * b, lambda g, n: (
        _unbroadcast(xp, g * b, sa) if n[0] else None,
        _unbroadcast(xp, g * a, sb) if n[1] else None,
    )


def multiply(x1: Any, x2: Any) -> Any:
    """x1 · x2 elementwise, broadcast."""
    return _apply(_multiply, x1, x2)


def _divide(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    out = a / b
    return out, lambda g, n: (
        _unbroadcast(xp, g / b, sa) if n[0] else None,
        _unbroadcast(xp, -g * out / b, sb) if n[1] else None,
    )


def divide(x1: Any, x2: Any) -> Any:
    """x1 / x2 elementwise (true division), broadcast."""
    return _apply(_divide, x1, x2)


def _negative(xp: Any, a: Array) -> Out:
    return -a, lambda g, n: (-g,)


def negative(x: Any) -> Any:
    """−x."""
    return _apply(_negative, x)


def _power(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    out = a**b

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        da = _unbroadcast(xp, g * b * a ** (b - 1), sa) if n[0] else None
        db = _unbroadcast(xp, g * out * xp.log(a), sb) if n[1] else None
        return da, db

    return out, vjp


def power(x1: Any, x2: Any) -> Any:
    """x1 ** x2 elementwise (∂/∂x2 needs x1 > 0)."""
    return _apply(_power, x1, x2)


def _exp(xp: Any, a: Array) -> Out:
    out = xp.exp(a)
    return out, lambda g, n: (g * out,)


def exp(x: Any) -> Any:
    """eˣ elementwise."""
    return _apply(_exp, x)


def _log(xp: Any, a: Array) -> Out:
    return xp.log(a), lambda g, n: (g / a,)


def log(x: Any) -> Any:
    """Natural logarithm elementwise."""
    return _apply(_log, x)


def _sqrt(xp: Any, a: Array) -> Out:
    out = xp.sqrt(a)
    return out, lambda g, n: (g / (2.0 * out),)


def sqrt(x: Any) -> Any:
    """√x elementwise."""
    return _apply(_sqrt, x)


def _square(xp: Any, a: Array) -> Out:
    return a * a, lambda g, n: (2.0 * a * g,)


def square(x: Any) -> Any:
    """x² elementwise."""
    return _apply(_square, x)


def _abs(xp: Any, a: Array) -> Out:
    return xp.abs(a), lambda g, n: (g * xp.sign(a),)


def abs(x: Any) -> Any:
    """|x| elementwise (gradient sign(x), 0 at 0)."""
    return _apply(_abs, x)


def absolute(x: Any) -> Any:
    """Alias of `abs`."""
    return _apply(_abs, x)


def _pick(xp: Any, a: Array, b: Array, first: Array) -> Out:
    """maximum/minimum: `first` marks where a wins; a tie sends half of g to each side (JAX's convention)."""
    sa, sb = _shape_of(a), _shape_of(b)
    tie = a == b
    out = xp.where(first, a, b)

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        ga = xp.where(tie, g * 0.5, xp.where(first, g, xp.zeros_like(g)))
        return (_unbroadcast(xp, ga, sa) if n[0] else None, _unbroadcast(xp, g - ga, sb) if n[1] else None)

    return out, vjp


def _maximum(xp: Any, a: Array, b: Array) -> Out:
    return _pick(xp, a, b, a >= b)


def _minimum(xp: Any, a: Array, b: Array) -> Out:
    return _pick(xp, a, b, a <= b)


def maximum(x1: Any, x2: Any) -> Any:
    """Elementwise max of x1 and x2, broadcast."""
    return _apply(_maximum, x1, x2)


def minimum(x1: Any, x2: Any) -> Any:
    """Elementwise min of x1 and x2, broadcast."""
    return _apply(_minimum, x1, x2)


def _where(xp: Any, c: Array, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    out = xp.where(c, a, b)

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        zero = xp.zeros_like(g)
        da = _unbroadcast(xp, xp.where(c, g, zero), sa) if n[1] else None
        db = _unbroadcast(xp, xp.where(c, zero, g), sb) if n[2] else None
        return None, da, db

    return out, vjp


def where(condition: Any, x1: Any = None, x2: Any = None) -> Any:
    """x1 where condition holds, else x2 (both broadcast); the condition gets no gradient."""
    if x1 is None or x2 is None:
        raise ValueError("ops.where needs both x1 and x2 (the one-argument form would read indices to the host)")
    return _apply(_where, condition, x1, x2)


def _clip(xp: Any, a: Array, lo: Any, hi: Any) -> Out:
    inside = (a >= lo) & (a <= hi)
    return xp.clip(a, lo, hi), lambda g, n: (g * inside, None, None)


def clip(x: Any, x_min: Any, x_max: Any) -> Any:
    """x limited to [x_min, x_max]; the gradient passes where x lies inside (bounds get none)."""
    return _apply(_clip, x, x_min, x_max)


def _tanh(xp: Any, a: Array) -> Out:
    out = xp.tanh(a)
    return out, lambda g, n: (g * (1.0 - out * out),)


def tanh(x: Any) -> Any:
    """tanh elementwise."""
    return _apply(_tanh, x)


def _sigmoid(xp: Any, a: Array) -> Out:
    # the tanh form never overflows
    out = 0.5 * xp.tanh(0.5 * a) + 0.5
    return out, lambda g, n: (g * out * (1.0 - out),)


def sigmoid(x: Any) -> Any:
    """1 / (1 + e⁻ˣ) elementwise."""
    return _apply(_sigmoid, x)


def _relu(xp: Any, a: Array) -> Out:
    zero = 0.0 if a.dtype.kind == "f" else 0  # an int array stays int, as in Keras
    return xp.maximum(a, zero), lambda g, n: (g * (a > zero),)


def relu(x: Any) -> Any:
    """max(x, 0) elementwise (gradient 0 at 0, as Keras)."""
    return _apply(_relu, x)


def _softmax(xp: Any, a: Array, axis: int) -> Out:
    e = xp.exp(a - xp.max(a, axis=axis, keepdims=True))
    out = e / xp.sum(e, axis=axis, keepdims=True)
    return out, lambda g, n: (out * (g - xp.sum(g * out, axis=axis, keepdims=True)),)


def _softmax_rows(xp: Any, a: Array) -> Out:
    """softmax over the last axis: its own op, so that a custom output layer ending in it can hand its
    input u to a fused softmax + cross-entropy loss (layers/custom.py)."""
    return _softmax(xp, a, -1)


def softmax(x: Any, axis: int = -1) -> Any:
    """e^x / Σ e^x along `axis` (shifted by the max, so it never overflows)."""
    if axis == -1 or axis == len(_shape_of(unwrap(x))) - 1:
        return _apply(_softmax_rows, x)
    return _apply(_softmax, x, axis=axis)


def _log_softmax(xp: Any, a: Array, axis: int) -> Out:
    shifted = a - xp.max(a, axis=axis, keepdims=True)
    out = shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    return out, lambda g, n: (g - xp.exp(out) * xp.sum(g, axis=axis, keepdims=True),)


def log_softmax(x: Any, axis: int = -1) -> Any:
    """log(softmax(x)) along `axis`, computed without forming softmax."""
    return _apply(_log_softmax, x, axis=axis)


def _compare(x1: Any, x2: Any, name: str) -> Array:
    a, b = unwrap(x1), unwrap(x2)
    xp = _xp_for(a if hasattr(a, "shape") else b)
    return getattr(xp, name)(a, b)


def greater(x1: Any, x2: Any) -> Array:
    """x1 > x2 elementwise, broadcast: a boolean array (no gradient)."""
    return _compare(x1, x2, "greater")


def greater_equal(x1: Any, x2: Any) -> Array:
    """x1 >= x2 elementwise, broadcast: a boolean array (no gradient)."""
    return _compare(x1, x2, "greater_equal")


def less(x1: Any, x2: Any) -> Array:
    """x1 < x2 elementwise, broadcast: a boolean array (no gradient)."""
    return _compare(x1, x2, "less")


def less_equal(x1: Any, x2: Any) -> Array:
    """x1 <= x2 elementwise, broadcast: a boolean array (no gradient)."""
    return _compare(x1, x2, "less_equal")


def _sum(xp: Any, a: Array, axis: Any, keepdims: bool) -> Out:
    shape = _shape_of(a)
    out = xp.sum(a, axis=axis, keepdims=keepdims, dtype=_SUM_DTYPES.get(a.dtype.name))
    return out, lambda g, n: (xp.broadcast_to(_expand(xp, g, axis, len(shape), keepdims), shape),)


# Keras sums small ints in 32 bits (NumPy in 64)
_SUM_DTYPES = {
    "bool": "int32",
    "int8": "int32",
    "int16": "int32",
    "int32": "int32",
    "uint8": "uint32",
    "uint16": "uint32",
}


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Σ over `axis` (an int, a tuple, or None for all)."""
    return _apply(_sum, x, axis=axis, keepdims=keepdims)


def _mean(xp: Any, a: Array, axis: Any, keepdims: bool) -> Out:
    shape = _shape_of(a)
    count = math.prod(shape[i] for i in _axes(axis, len(shape))) if shape else 1
    out = xp.mean(a, axis=axis, keepdims=keepdims)
    return out, lambda g, n: (xp.broadcast_to(_expand(xp, g, axis, len(shape), keepdims) / count, shape),)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Arithmetic mean over `axis` (an int, a tuple, or None for all)."""
    return _apply(_mean, x, axis=axis, keepdims=keepdims)


def _extreme(xp: Any, a: Array, axis: Any, keepdims: bool, take_max: bool) -> Out:
    shape = _shape_of(a)
    reduce = xp.max if take_max else xp.min
    out = reduce(a, axis=axis, keepdims=keepdims)

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        # ties share the gradient equally
        hit = a == _expand(xp, out, axis, len(shape), keepdims)
        hit = xp.astype(hit, g.dtype)
        count = xp.sum(hit, axis=axis, keepdims=True)
        return (hit * (_expand(xp, g, axis, len(shape), keepdims) / count),)

    return out, vjp


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Largest value over `axis`; tied maxima share the gradient."""
    return _apply(_extreme, x, axis=axis, keepdims=keepdims, take_max=True)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Smallest value over `axis`; tied minima share the gradient."""
    return _apply(_extreme, x, axis=axis, keepdims=keepdims, take_max=False)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Array:
    """Index of the largest value along `axis` as int32, as Keras (no gradient)."""
    raw = unwrap(x)
    xp = _xp_for(raw)
    out = xp.astype(xp.argmax(raw, axis=axis), xp.int32)
    return xp.expand_dims(out, axis) if keepdims and axis is not None else out


def _logsumexp(xp: Any, a: Array, axis: Any, keepdims: bool) -> Out:
    shape = _shape_of(a)
    top = xp.max(a, axis=axis, keepdims=True)
    kept = xp.log(xp.sum(xp.exp(a - top), axis=axis, keepdims=True)) + top
    out = (
        kept
        if keepdims
        else xp.reshape(kept, tuple(d for i, d in enumerate(kept.shape) if i not in _axes(axis, len(shape))))
    )
    return out, lambda g, n: (_expand(xp, g, axis, len(shape), keepdims) * xp.exp(a - kept),)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """log Σ eˣ over `axis`, shifted by the max (no overflow); its gradient is softmax(x)."""
    return _apply(_logsumexp, x, axis=axis, keepdims=keepdims)


def _matmul(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    if not sa or not sb:
        raise ValueError(f"ops.matmul needs arrays of at least one dimension, received shapes {sa} and {sb}")

    def vjp(g: Array, n: tuple[bool, ...]) -> Sequence[Array | None]:
        a2 = xp.reshape(a, (1, -1)) if len(sa) == 1 else a
        b2 = xp.reshape(b, (-1, 1)) if len(sb) == 1 else b
        g2 = g
        if len(sa) == 1 and len(sb) == 1:  # a vector·vector product: g is 0-d
            g2 = xp.reshape(g2, (1, 1))
        elif len(sa) == 1:
            g2 = xp.expand_dims(g2, -2)
        elif len(sb) == 1:
            g2 = xp.expand_dims(g2, -1)
        da = db = None
        if n[0]:
            da = xp.matmul(g2, xp.swapaxes(b2, -1, -2))
            da = _unbroadcast(xp, da, (1, *sa) if len(sa) == 1 else sa)
            da = xp.reshape(da, sa) if len(sa) == 1 else da
        if n[1]:
            db = xp.matmul(xp.swapaxes(a2, -1, -2), g2)
            db = _unbroadcast(xp, db, (*sb, 1) if len(sb) == 1 else sb)
            db = xp.reshape(db, sb) if len(sb) == 1 else db
        return da, db

    return xp.matmul(a, b), vjp


def _matmul_into_sink(sink: Any, layer: Any, name: str, node: Tensor, i: int) -> Callable[[Array], None] | None:
    """x @ W with x (batch, in) and weight W (in, out): ∂L/∂W = xᵀ·g goes to the sink as a Dense's kernel
    (in-place SGD: one GEMM into W, after the VJP has read W for ∂L/∂x)."""
    x, w = unwrap(node.parents[0]), node.parents[1].data
    if i != 1 or getattr(x, "ndim", 0) != 2 or w.ndim != 2 or x.dtype != w.dtype:
        return None
    return lambda g: sink.matmul_t(layer, name, x, g)


def matmul(x1: Any, x2: Any) -> Any:
    """Matrix product with NumPy's rules: (…, n, k) @ (…, k, m) → (…, n, m); 1-D arguments are vectors."""
    return _apply(_matmul, x1, x2)


def dot(x1: Any, x2: Any) -> Any:
    """NumPy's dot for arguments of up to two dimensions (a number scales the other argument)."""
    n1, n2 = len(_shape_of(unwrap(x1))), len(_shape_of(unwrap(x2)))
    if n1 == 0 or n2 == 0:
        return multiply(x1, x2)
    if n1 > 2 or n2 > 2:
        raise ValueError(
            f"ops.dot supports arguments of at most 2 dimensions here, received {n1} and {n2}; "
            "use ops.matmul for batched products"
        )
    return matmul(x1, x2)


def ends_in_softmax(out: Any) -> Any:
    """The tensor u when recorded `out` is softmax(u) over the last axis, else None."""
    if type(out) is Tensor and out.op is _softmax_rows and type(out.parents[0]) is Tensor:
        return out.parents[0]
    return None
