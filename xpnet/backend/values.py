"""Values that cross between a backend and the rest: weights written from any source, host dtypes,
arange on an array's device, and the names of built-in activations and losses."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

Array = Any


class Backend(Protocol):
    """What these helpers use of a backend (`Ops` has it all)."""

    xp: Any

    def asarray(self, a: Any, dtype: Any = None) -> Array: ...

    def is_native(self, a: Any) -> bool: ...

    def activate(self) -> AbstractContextManager[Any]: ...


def weight_source(ops: Backend, value: Any) -> Array:
    """`value` as it should be written into a weight of `ops`: this backend's own array as it is (no
    copy, no trip through the host), anything else (a host array, a list, another device's array) as
    a host NumPy array."""
    if ops.is_native(value):
        return value
    get = getattr(value, "get", None)  # a CuPy array of another device or backend: one explicit download
    cp = sys.modules.get("cupy")  # recognised by type too: the CPU stand-in has no __cuda_array_interface__
    cupy_array = cp is not None and isinstance(value, getattr(cp, "ndarray", ()))
    if (
        get is not None
        and not isinstance(value, np.ndarray)
        and (cupy_array or hasattr(value, "__cuda_array_interface__"))
    ):
        return get()
    return np.asarray(value)


def is_numeric(a: Array) -> bool:
    """Whether `a` (from `weight_source`) holds numbers (bool, integers or floats; NaN and inf included)."""
    return host_dtype(a.dtype).kind in "biuf"


def write_weight(ops: Backend, view: Array, a: Array) -> None:
    """view[...] = a, for `a` from `weight_source`, cast to the view's dtype (one upload for host data)."""
    dtype = host_dtype(view.dtype)
    with ops.activate():
        if isinstance(a, np.ndarray) and not ops.is_native(a):
            view[...] = ops.asarray(a.astype(dtype, copy=False))
        elif host_dtype(a.dtype) == dtype:
            view[...] = a
        else:
            view[...] = ops.xp.astype(a, view.dtype)


def host_dtype(dtype: Any) -> np.dtype[Any]:
    """The NumPy dtype of a backend's dtype (NumPy's, CuPy's, or the strict stand-in's `float32`)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).split(".")[-1])


def builtin_name(obj: Any) -> str | None:
    """The name of a built-in activation or loss, None for user classes (subclasses included).

    For the registry points outside the backend (which layers a capture is checked with); the backends
    themselves choose variants by method (`Activation.apply`, `Loss.fused`), never by this name.
    """
    # the class's name: a loss made with name="..." (Keras's display name) keeps its fast path;
    # FunctionActivation lives in xpnet.activations but runs the user's code, so it is no built-in
    if type(obj).__module__ not in ("xpnet.activations", "xpnet.losses") or getattr(obj, "builtin", True) is False:
        return None
    return getattr(type(obj), "name", None)


def arange_like(xp: Any, n: int, dtype: Any, like: Array) -> Array:
    """arange on the device of `like` (CuPy places arrays on the current device instead)."""
    if getattr(xp, "__name__", "") == "cupy":
        return xp.arange(n, dtype=dtype)
    return xp.arange(n, dtype=dtype, device=like.device)
