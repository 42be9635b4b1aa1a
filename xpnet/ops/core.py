"""The machinery every `xpnet.ops` function runs through: where its arrays live, Keras's dtype rules,
and the choice between computing at once, recording on the tape, and a call in a model's graph.

Each op is a private `_name(xp, *arrays, **settings)` returning (output, vjp) (xpnet/ops/numeric.py,
xpnet/ops/arrays.py); its public `name(...)` hands it to `_apply`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..tape import SYMBOLIC, Tape, Tensor, active
from ..variables import Variable

Array = Any
Out = tuple[Array, Callable[[Array, tuple[bool, ...]], Sequence[Array | None]]]
FLOATX = "float32"
# the ops whose dtypes follow Keras rather than NumPy: fn -> (first argument that counts, rule of
# _keras_promote); xpnet/ops/__init__.py fills it once every op is defined
KERAS_TYPES: dict[Callable[..., Out], tuple[int, str]] = {}


def _leaf_or_value(a: Any, tape: Tape | None) -> Any:
    if isinstance(a, Variable):
        return tape.leaf(a) if tape is not None else a.value
    if tape is not None and tape.raw_weights and id(a) in tape.raw_weights:
        # a layer's weight read as its raw array (`self.dense.kernel`): the same leaf as its Variable
        return tape.leaf(tape.raw_weights[id(a)])
    return a


def _namespace(raw: Sequence[Any]) -> Any:
    """The array module of the arrays among `raw` (NumPy for host data, else the backend that owns them)."""
    from ..backend import get_backend, namespace_of

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
    promote = KERAS_TYPES.get(fn)
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
    raw = [unwrap(a) for a in args]
    xp = _namespace(raw)
    raw = [xp.asarray(r) if isinstance(r, (list, tuple)) else r for r in raw]
    promote = KERAS_TYPES.get(fn)
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
    from ..backend import get_backend

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


def unwrap(x: Any) -> Any:
    """The plain array under a Tensor or Variable; other values unchanged."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, Variable):
        return x.value
    return x


def _xp_for(raw: Any) -> Any:
    tape = active()
    return tape.xp if tape is not None else _namespace([raw])
