"""Backend selection: the array module is a value, resolved once per model.

Specs: "auto" (CuPy when it imports and a CUDA device is usable, else NumPy), "numpy",
"cupy", "cupy:N", and "strict" (a foreign-device stand-in for CI). The default comes from a
`use_backend(...)` context, else the `XPNET_BACKEND` environment variable, else "auto".
Nothing outside this package imports cupy, and importing xpnet never touches CUDA.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .base import Array, Ops
from .numpy_ops import NumpyOps

__all__ = [
    "Array",
    "BackendUnavailableError",
    "Ops",
    "available_backends",
    "get_backend",
    "namespace_of",
    "use_backend",
]

_current: contextvars.ContextVar[str | Ops | None] = contextvars.ContextVar("xpnet_backend", default=None)
_cache: dict[str, Ops] = {}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why and how to fix it."""


def _cupy_problem(device_id: int = 0) -> str | None:
    """None when CuPy can run on `device_id`, else the reason it cannot."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        return (
            f"cupy is not installed or failed to import ({type(e).__name__}: {e}). "
            "Install the wheel matching your CUDA driver: pip install 'xpnet[cuda12]' "
            "(cupy-cuda12x) or pip install 'xpnet[cuda13]' (cupy-cuda13x)."
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return (
            f"cupy imported but no CUDA device is usable ({type(e).__name__}: {e}). "
            "Check that an NVIDIA GPU is present and the driver works (nvidia-smi), and that the "
            "cupy wheel matches the driver's CUDA version; or use backend='numpy'."
        )
    if count == 0:
        return "cupy imported but the CUDA runtime reports 0 devices; use backend='numpy'."
    if not 0 <= device_id < count:
        return f"cupy:{device_id} was requested but only {count} CUDA device(s) exist (cupy:0..cupy:{count - 1})."
    return None


def _parse(spec: str) -> tuple[str, int]:
    s = spec.strip().lower()
    if s in ("auto", "numpy", "strict", "cupy"):
        return s, 0
    if s.startswith("cupy:") and s[5:].isdigit():
        return "cupy", int(s[5:])
    raise ValueError(
        f"Unknown backend {spec!r}: expected 'auto', 'numpy', 'cupy', 'cupy:N' (N a device number) or 'strict'."
    )


def default_spec() -> str | Ops:
    cur = _current.get()
    if cur is not None:
        return cur
    return os.environ.get("XPNET_BACKEND", "").strip() or "auto"


def get_backend(spec: str | Ops | None = None) -> Ops:
    """Resolve a backend spec (or the current default) to a shared `Ops` instance."""
    if spec is None:
        spec = default_spec()
    if isinstance(spec, Ops):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"backend must be a string like 'numpy' or 'cupy:0' or an Ops, got {type(spec).__name__}")
    kind, dev = _parse(spec)
    if kind == "auto":
        kind = "numpy" if _cupy_problem(0) is not None else "cupy"
    key = f"{kind}:{dev}" if kind == "cupy" else kind
    ops = _cache.get(key)
    if ops is not None:
        return ops
    if kind == "numpy":
        ops = NumpyOps()
    elif kind == "strict":
        try:
            from .strict_ops import StrictOps
        except ImportError as e:
            raise BackendUnavailableError(
                f"the 'strict' test backend needs array-api-strict ({e}); pip install 'xpnet[dev]'"
            ) from e
        ops = StrictOps()
    else:
        problem = _cupy_problem(dev)
        if problem is not None:
            raise BackendUnavailableError(f"backend {spec!r} is not usable: {problem}")
        from .cupy_ops import CupyOps

        ops = CupyOps(dev)
    _cache[key] = ops
    return ops


def namespace_of(a: object) -> object | None:
    """The array module of array `a` (NumPy, CuPy or an array-API namespace), None for other objects.

    CuPy arrays have no `__array_namespace__`; they are recognised through an already imported
    cupy, so asking never imports CUDA.
    """
    get = getattr(a, "__array_namespace__", None)
    if get is not None:
        return get()
    cp = sys.modules.get("cupy")
    if cp is not None and isinstance(a, getattr(cp, "ndarray", ())):
        return cp
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine (for tests and `xpnet info`)."""
    names = ["numpy"]
    try:
        import array_api_strict  # noqa: F401

        names.append("strict")
    except ImportError:
        pass
    if _cupy_problem(0) is None:
        names.append("cupy")
    return names


@contextmanager
def use_backend(spec: str | Ops) -> Iterator[Ops]:
    """Within the block, models built or compiled without an explicit backend use `spec`."""
    ops = get_backend(spec)
    token = _current.set(ops)
    try:
        yield ops
    finally:
        _current.reset(token)
