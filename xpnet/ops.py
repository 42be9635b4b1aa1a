"""Keras 3's `keras.ops` for xpnet: array functions, each with its vector-Jacobian product beside it.

`from xpnet import ops` then `ops.matmul(x, w) + b`, `ops.mean(ops.square(y - p), axis=-1)`.
Outside a model the functions compute at once on the arrays' backend (NumPy or CuPy; creation
functions use the process's default backend) and return its arrays. Inside a training step a
custom layer, loss or activation receives `xpnet.tape.Tensor`s: each function then also
records itself with its VJP, and the model's backward pass replays them (xpnet/tape.py).

Each private `_name(xp, *arrays, **settings)` returns (output, vjp): `vjp(g, needs)` gives
∂L/∂input for every input i with needs[i], from g = ∂L/∂output. Shapes follow NumPy's
broadcasting; gradients of broadcast inputs are summed back to the input's shape.
Integer results (argmax, shape, one_hot indices) have no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tape import OPERATORS, SYMBOLIC, Tape, Tensor, active
from .variables import Variable

Array = Any
Out = tuple[Array, Callable[[Array, tuple[bool, ...]], Sequence[Array | None]]]
FLOATX = "float32"


def _leaf_or_value(a: Any, tape: Tape | None) -> Any:
    if isinstance(a, Variable):
        return tape.leaf(a) if tape is not None else a.value
    if tape is not None and tape.raw_weights and id(a) in tape.raw_weights:
        # a layer's weight read as its raw array (`self.dense.kernel`): the same leaf as its Variable
        return tape.leaf(tape.raw_weights[id(a)])
    return a


def _namespace(raw: Sequence[Any]) -> Any:
    """The array module of the arrays among `raw` (NumPy for host data, else the backend that owns them)."""
    from .backend import get_backend, namespace_of

    for a in raw:
        if isinstance(a, (np.ndarray, int, float, bool, np.generic, list, tuple)):
            continue
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            xp = namespace_of(a)  # an array-API array names its own namespace (the strict backend's)
            if xp is not None:
                return xp
            ops = get_backend()
            if ops.is_native(a):
                return ops.xp
            return get_backend("cupy").xp
    return np


def _apply(fn: Callable[..., Out], *args: Any, **settings: Any) -> Any:
    """Run op `fn` on `args` (arrays, Tensors, Variables, Python numbers): plain arrays out of a recording,
    a recorded Tensor when some input is one; on a model's symbolic tensors, a layer call in its graph."""
    tape = active()
    if tape is None:
        return _apply_eagerly(fn, args, settings)
    # one pass over the arguments: this runs for every op of every custom layer in every step
    xp, raw_weights = tape.xp, tape.raw_weights
    xs: Any = args
    raw = []
    recorded = False
    for k, a in enumerate(args):
        if type(a) is not Tensor and (isinstance(a, Variable) or id(a) in raw_weights):
            if xs is args:
                xs = list(args)
            a = xs[k] = _leaf_or_value(a, tape)
        if type(a) is Tensor:
            raw.append(a.data)
            recorded = True
        else:
            raw.append(xp.asarray(a) if isinstance(a, (list, tuple)) else a)
    promote = _KERAS_TYPES.get(fn)
    if promote is not None:
        raw = _keras_promote(xp, raw, *promote)
    out, vjp = fn(xp, *raw, **settings)
    if not recorded:
        return out
    return tape.record(Tensor(out, tuple(xs), vjp, fn))


def _apply_eagerly(fn: Callable[..., Out], args: tuple[Any, ...], settings: dict[str, Any]) -> Any:
    """`fn` outside a recording: on the arrays' backend, or as a layer call on a model's symbolic tensors."""
    if SYMBOLIC and any(hasattr(a, "feature_shape") for a in args):
        return SYMBOLIC["apply"](_apply, fn, args, settings)
    raw = [_data(a) for a in args]
    xp = _namespace(raw)
    raw = [xp.asarray(r) if isinstance(r, (list, tuple)) else r for r in raw]
    promote = _KERAS_TYPES.get(fn)
    if promote is not None:
        raw = _keras_promote(xp, raw, *promote)
    return fn(xp, *raw, **settings)[0]


def _keras_promote(xp: Any, raw: list[Any], first: int, rule: str) -> list[Any]:
    """Keras's dtypes where NumPy's differ (arguments from position `first` on), checked against keras.ops:

    "mix": an int or bool array meeting a float array takes that float's dtype, meeting a Python float it
    becomes float32 (float32 code stays float32), and a bool array meeting a Python int becomes int32;
    "float": int inputs become float32 whatever they meet (exp, log, mean, divide, ...);
    "int": as "mix", and bool arrays alone become int32 too (power, square, relu);
    "matmul": as "mix", and int8 · int8 gives int32.
    """
    args = raw[first:]
    ints = [r for r in args if getattr(r, "dtype", None) is not None and _kind(xp, r.dtype) in "biu"]
    if not ints:
        return raw
    floats = [r.dtype for r in args if getattr(r, "dtype", None) is not None and _kind(xp, r.dtype) == "f"]
    if floats:
        target = xp.result_type(*floats)
    elif rule == "float" or any(isinstance(r, float) for r in args):
        target = np.dtype(FLOATX)
    elif _to_int32(xp, rule, args, ints):
        target = np.dtype("int32")
    else:
        return raw
    return raw[:first] + [xp.astype(r, target) if any(r is i for i in ints) else r for r in args]


def _to_int32(xp: Any, rule: str, args: list[Any], ints: list[Any]) -> bool:
    """Whether Keras gives int32 where no float takes part: bools with a Python int (or alone, by `rule`),
    int8 · int8 in a matmul."""
    if all(_kind(xp, r.dtype) == "b" for r in ints) and (rule == "int" or any(type(r) is int for r in args)):
        return True
    return rule == "matmul" and len(ints) == 2 and all(r.dtype == np.int8 for r in ints)


def _kind(xp: Any, dtype: Any) -> str:
    """NumPy's dtype.kind ("f", "i", "u", "b", "c"), also for array-API dtypes that have none (the strict backend's)."""
    kind = getattr(dtype, "kind", None)
    if kind is not None:
        return str(kind)
    kinds = (("bool", "b"), ("real floating", "f"), ("signed integer", "i"), ("unsigned integer", "u"))
    return next((k for name, k in kinds if xp.isdtype(dtype, name)), "c")


def _default_xp() -> Any:
    tape = active()
    if tape is not None:
        return tape.xp
    from .backend import get_backend

    return get_backend().xp


def _dtype(xp: Any, dtype: Any, default: str = FLOATX) -> Any:
    name = default if dtype is None else (dtype if isinstance(dtype, str) else np.dtype(dtype).name)
    if name not in {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "bool"}:
        raise ValueError(f"dtype must be a float, int or bool type name such as 'float32', received {dtype!r}")
    return getattr(xp, "bool_" if name == "bool" else name)


def _shape_of(a: Any) -> tuple[int, ...]:
    return tuple(getattr(a, "shape", ()))


def _unbroadcast(xp: Any, g: Array, shape: tuple[int, ...]) -> Array:
    """Sum g over the axes along which an input of `shape` was broadcast to g's shape."""
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = xp.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return g


def ends_in_softmax(out: Any) -> Any:
    """The tensor u when recorded `out` is softmax(u) over the last axis, else None."""
    if type(out) is Tensor and out.op is _softmax_rows and type(out.parents[0]) is Tensor:
        return out.parents[0]
    return None


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _expand(xp: Any, g: Array, axis: Any, ndim: int, keepdims: bool) -> Array:
    """g of a reduction over `axis` reshaped so it broadcasts against the input again."""
    if keepdims or ndim == 0:
        return g
    shape = list(g.shape)
    for a in sorted(_axes(axis, ndim)):
        shape.insert(a, 1)
    return xp.reshape(g, tuple(shape))


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


def _add(xp: Any, a: Array, b: Array) -> Out:
    sa, sb = _shape_of(a), _shape_of(b)
    return a + b, lambda g, n: (_unbroadcast(xp, g, sa) if n[0] else None, _unbroadcast(xp, g, sb) if n[1] else None)


def _add_into_sink(sink: Any, layer: Any, name: str, node: Tensor, i: int) -> Callable[[Array], None] | None:
    """u + b with u (batch, units) and weight b (units,): ∂L/∂b = Σ_rows g goes to the sink as a Dense's bias."""
    b, u = node.parents[i].data, _data(node.parents[1 - i])
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
    if axis == -1 or axis == len(_shape_of(_data(x))) - 1:
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
    a, b = _data(x1), _data(x2)
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
    raw = _data(x)
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
    x, w = _data(node.parents[0]), node.parents[1].data
    if i != 1 or getattr(x, "ndim", 0) != 2 or w.ndim != 2 or x.dtype != w.dtype:
        return None
    return lambda g: sink.matmul_t(layer, name, x, g)


def matmul(x1: Any, x2: Any) -> Any:
    """Matrix product with NumPy's rules: (…, n, k) @ (…, k, m) → (…, n, m); 1-D arguments are vectors."""
    return _apply(_matmul, x1, x2)


def dot(x1: Any, x2: Any) -> Any:
    """NumPy's dot for arguments of up to two dimensions (a number scales the other argument)."""
    n1, n2 = len(_shape_of(_data(x1))), len(_shape_of(_data(x2)))
    if n1 == 0 or n2 == 0:
        return multiply(x1, x2)
    if n1 > 2 or n2 > 2:
        raise ValueError(
            f"ops.dot supports arguments of at most 2 dimensions here, received {n1} and {n2}; "
            "use ops.matmul for batched products"
        )
    return matmul(x1, x2)


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
    shape = list(_shape_of(_data(x)))
    k = axis if axis >= 0 else len(shape) + 1 + axis
    if not 0 <= k <= len(shape):
        raise ValueError(f"expand_dims: axis {axis} is out of range for an array of {len(shape)} dimensions")
    shape.insert(k, 1)
    return _apply(_reshape, x, newshape=tuple(shape))


def squeeze(x: Any, axis: Any = None) -> Any:
    """x without its axes of length 1 (only `axis`, when given; it must have length 1)."""
    shape = _shape_of(_data(x))
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
    raw = _data(x)
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
    raw = _data(x)
    if isinstance(raw, np.ndarray):
        return np.array(raw)
    if hasattr(raw, "get"):
        return np.asarray(raw.get())
    return np.asarray(raw)


def shape(x: Any) -> tuple[int, ...]:
    """x's shape as a tuple of ints (no device read)."""
    return _shape_of(_data(x))


def _data(x: Any) -> Any:
    """The plain array under a Tensor or Variable; other values unchanged."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, Variable):
        return x.value
    return x


def _xp_for(raw: Any) -> Any:
    tape = active()
    return tape.xp if tape is not None else _namespace([raw])


# ops whose weight gradient a gradient sink can take straight from the op's inputs, as a built-in layer hands it:
# op -> route(sink, owner layer, weight name, node, input position) -> a function of the node's ∂L/∂output, or None
SINK_ROUTES: dict[Callable[..., Out], Callable[..., Callable[[Array], None] | None]] = {
    _add: _add_into_sink,
    _matmul: _matmul_into_sink,
}

# the ops whose dtypes follow Keras rather than NumPy: fn -> (first argument that counts, rule of _keras_promote)
_KERAS_TYPES: dict[Callable[..., Out], tuple[int, str]] = {
    _add: (0, "mix"),
    _subtract: (0, "mix"),
    _multiply: (0, "mix"),
    _divide: (0, "float"),
    _power: (0, "int"),
    _maximum: (0, "mix"),
    _minimum: (0, "mix"),
    _where: (1, "mix"),
    _clip: (0, "mix"),
    _square: (0, "int"),
    _relu: (0, "int"),
    _matmul: (0, "matmul"),
    _concatenate: (0, "mix"),
    _stack: (0, "mix"),
    _exp: (0, "float"),
    _log: (0, "float"),
    _sqrt: (0, "float"),
    _tanh: (0, "float"),
    _sigmoid: (0, "float"),
    _softmax: (0, "float"),
    _softmax_rows: (0, "float"),
    _log_softmax: (0, "float"),
    _logsumexp: (0, "float"),
    _mean: (0, "float"),
}

__all__ = [
    "abs",
    "absolute",
    "add",
    "arange",
    "argmax",
    "cast",
    "clip",
    "concatenate",
    "convert_to_numpy",
    "convert_to_tensor",
    "divide",
    "dot",
    "exp",
    "expand_dims",
    "eye",
    "full",
    "getitem",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "multiply",
    "negative",
    "one_hot",
    "ones",
    "power",
    "relu",
    "reshape",
    "shape",
    "sigmoid",
    "softmax",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "subtract",
    "sum",
    "take",
    "tanh",
    "transpose",
    "where",
    "zeros",
]

OPERATORS.update(
    add=add,
    subtract=subtract,
    multiply=multiply,
    divide=divide,
    matmul=matmul,
    power=power,
    negative=negative,
    abs=abs,
    getitem=getitem,
    transpose=transpose,
    greater=greater,
    greater_equal=greater_equal,
    less=less,
    less_equal=less_equal,
)
