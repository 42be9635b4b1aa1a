"""GEMM through cuBLAS on the current stream, callable while that stream captures a CUDA graph.

CuPy 14.2 refuses every cuBLAS call during stream capture (its wrappers set the handle's stream
to the current one first, and that call refuses a capturing stream), while cuBLAS itself
supports capture. So the libcublas that CuPy has already loaded is bound directly with ctypes:
one handle per device, its stream set before each call, a workspace from CuPy's pool (a
captured GEMM must not allocate one of its own). Where libcublas cannot be found, CuPy's
low-level wrappers (`cupy_backends.cuda.libs.cublas`, the same C signatures) are used: they work
eagerly and, on the CPU stand-in with GPUSIM_CUBLAS_IN_CAPTURE=1, inside a capture. The eager step's
β = 1 GEMM (plain SGD inside backprop) takes those wrappers always (`eager_gemm_for`): the ctypes
binding serves only a capture, so `jit_compile=False` never depends on it.

Row-major arrays are column-major transposes, so C = op(A)·op(B) is computed as
Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands swapped.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

Array = Any
_OP_N, _OP_T = 0, 1
_POINTER_HOST, _POINTER_DEVICE = 0, 1
_WORKSPACE_BYTES = 32 * 2**20  # NVIDIA's guide: 32 MiB covers every GEMM kernel on Hopper


class _DirectLib:
    """libcublas through ctypes: the C API itself, which captures on any stream."""

    kind = "libcublas (ctypes)"

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, sz]
        lib.cublasSetPointerMode_v2.argtypes = [vp, i]
        gemm_args: Any = [vp, i, i, i, i, i, vp, vp, i, vp, i, vp, vp, i]
        lib.cublasSgemm_v2.argtypes = gemm_args
        lib.cublasDgemm_v2.argtypes = gemm_args

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def create(self) -> int:
        h = ctypes.c_void_p()
        self._check(self.lib.cublasCreate_v2(ctypes.byref(h)), "cublasCreate_v2")
        return int(h.value or 0)

    def set_stream(self, handle: int, stream: int) -> None:
        self._check(self.lib.cublasSetStream_v2(handle, stream), "cublasSetStream_v2")

    def set_workspace(self, handle: int, ptr: int, nbytes: int) -> None:
        self._check(self.lib.cublasSetWorkspace_v2(handle, ptr, nbytes), "cublasSetWorkspace_v2")

    def set_pointer_mode(self, handle: int, mode: int) -> None:
        self._check(self.lib.cublasSetPointerMode_v2(handle, mode), "cublasSetPointerMode_v2")

    def gemm(self, double: bool, *args: int) -> None:
        fn = self.lib.cublasDgemm_v2 if double else self.lib.cublasSgemm_v2
        self._check(fn(*args), "cublasDgemm_v2" if double else "cublasSgemm_v2")


class _CupyLowLevel:
    """CuPy's own thin wrappers over the same C functions (refused during capture by CuPy 14.2)."""

    kind = "cupy_backends.cuda.libs.cublas"

    def __init__(self, mod: Any) -> None:
        self.mod = mod

    def create(self) -> int:
        return int(self.mod.create())

    def set_stream(self, handle: int, stream: int) -> None:
        self.mod.setStream(handle, stream)

    def set_workspace(self, handle: int, ptr: int, nbytes: int) -> None:
        fn = getattr(self.mod, "setWorkspace", None)
        if fn is not None:
            fn(handle, ptr, nbytes)

    def set_pointer_mode(self, handle: int, mode: int) -> None:
        self.mod.setPointerMode(handle, mode)

    def gemm(self, double: bool, *args: int) -> None:
        (self.mod.dgemm if double else self.mod.sgemm)(*args)


def _load(cp: Any) -> _DirectLib | _CupyLowLevel:
    # importing CuPy's wrappers makes CuPy load its libcublas; dlopen by soname then finds that copy
    from cupy_backends.cuda.libs import cublas

    names = ["libcublas.so.12", "libcublas.so.13", "libcublas.so", "cublas64_12.dll"]
    try:  # the pip wheel's copy (nvidia-cublas-cu12), where the soname is not on the search path
        import nvidia.cublas  # type: ignore[import-not-found]

        names += [os.path.join(p, "lib", "libcublas.so.12") for p in nvidia.cublas.__path__]
    except ImportError:
        pass
    for name in names:
        try:
            return _DirectLib(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return _CupyLowLevel(cublas)


def _operand(a: Array) -> tuple[int, int, int] | None:
    """(pointer, cuBLAS op, leading dimension) of row-major 2-D `a` seen column-major, or None if strided."""
    rows, cols = int(a.shape[0]), int(a.shape[1])
    item = a.itemsize
    s0, s1 = a.strides
    if (s1 == item or cols == 1) and (s0 == cols * item or rows == 1):
        return int(a.data.ptr), _OP_N, max(cols, 1)
    if (s0 == item or rows == 1) and (s1 == rows * item or cols == 1):
        return int(a.data.ptr), _OP_T, max(rows, 1)
    return None


class Gemm:
    """C = α·A·B + β·C for row-major 2-D float32/float64 CuPy arrays, one cuBLAS call on the current stream.

    A: (m, k), B: (k, n), C: (m, n), all of one dtype; A and B may be transposed views of
    C-contiguous arrays. α and β are host numbers (baked into a captured graph) or 0-d device
    arrays in C's dtype (read at every launch).
    """

    def __init__(self, cp: Any, lib: _DirectLib | _CupyLowLevel | None = None) -> None:
        self.cp = cp
        self.lib = _load(cp) if lib is None else lib
        self.handle = self.lib.create()
        self._workspace: Any = None
        if isinstance(self.lib, _DirectLib):
            # a captured GEMM must not allocate: cuBLAS gets its workspace once, from CuPy's pool
            self._workspace = cp.cuda.alloc(_WORKSPACE_BYTES)
            self.lib.set_workspace(self.handle, int(self._workspace.ptr), _WORKSPACE_BYTES)
        self._host = {np.dtype(np.float32): _host_scalars(np.float32), np.dtype(np.float64): _host_scalars(np.float64)}

    def supports(self, a: Array, b: Array) -> bool:
        """Whether `matmul(a, b)` can go through this binding (2-D, same float dtype, plain layouts)."""
        return (
            a.ndim == 2
            and b.ndim == 2
            and a.dtype == b.dtype
            and a.dtype in self._host
            and _operand(a) is not None
            and _operand(b) is not None
        )

    def __call__(self, a: Array, b: Array, out: Array | None = None, alpha: Any = 1.0, beta: Any = 0.0) -> Array:
        m, k = int(a.shape[0]), int(a.shape[1])
        n = int(b.shape[1])
        if int(b.shape[0]) != k:
            raise ValueError(f"gemm: A is {tuple(a.shape)} and B is {tuple(b.shape)}; their inner sizes differ")
        dt = np.dtype(a.dtype)
        if out is None:
            out = self.cp.empty((m, n), dtype=dt)
        if tuple(out.shape) != (m, n) or not out.flags.c_contiguous or np.dtype(out.dtype) != dt:
            raise ValueError(f"gemm: out must be a C-contiguous {dt.name} ({m}, {n}) array, received {out.shape}")
        if m == 0 or n == 0:
            return out
        pa, pb = _operand(a), _operand(b)
        if pa is None or pb is None:
            raise ValueError("gemm: operands must be C-contiguous or transposes of C-contiguous arrays")
        if k == 0:
            out.fill(0)
            return out
        device = not isinstance(alpha, (int, float))
        lib, h = self.lib, self.handle
        lib.set_stream(h, int(self.cp.cuda.get_current_stream().ptr))
        if device:
            lib.set_pointer_mode(h, _POINTER_DEVICE)
            pal, pbe = int(alpha.data.ptr), int(beta.data.ptr)
        else:
            host = self._host[dt]
            pal, pbe = host(float(alpha)), host(float(beta))
        try:
            lib.gemm(dt == np.float64, h, pb[1], pa[1], n, m, k, pal, pb[0], pb[2], pa[0], pa[2], pbe, out.data.ptr, n)
        finally:
            if device:
                lib.set_pointer_mode(h, _POINTER_HOST)
        return out

    def __repr__(self) -> str:
        return f"Gemm({self.lib.kind})"


def _host_scalars(dtype: Any) -> Any:
    """Pointers to host copies of α/β values: kept for the binding's life (a captured graph reads them at capture)."""
    kept: dict[float, np.ndarray] = {}

    def pointer(v: float) -> int:
        a = kept.get(v)
        if a is None:
            a = kept[v] = np.full(1, v, dtype=dtype)
        return int(a.ctypes.data)

    return pointer


_BINDINGS: dict[int, Gemm] = {}


def gemm_for(ops: Any) -> Gemm:
    """The binding for CuPy backend `ops` (one cuBLAS handle per device, made on first use)."""
    g = _BINDINGS.get(ops.device_id)
    if g is None or g.cp is not ops.xp:
        with ops.activate():
            g = _BINDINGS[ops.device_id] = Gemm(ops.xp)
    return g


_EAGER: dict[int, tuple[Any, Gemm | None]] = {}  # per device: (the cupy it was made with, its GEMM)


def eager_gemm_for(ops: Any) -> Gemm | None:
    """A GEMM through CuPy's own low-level cuBLAS wrappers (`cupy_backends.cuda.libs.cublas`) for CuPy backend
    `ops`, on a handle of its own (made on first use, one per device), or None where CuPy has no cuBLAS. For
    the eager step only: CuPy refuses these wrappers while a stream captures, so a captured step's GEMMs go
    through `gemm_for`; eagerly CuPy's tested wrappers are the safe route, not the ctypes binding."""
    # the module itself, not `ops.xp`: during a recording or a capture that is a wrapper holding the step's arrays
    cp = sys.modules.get("cupy", ops.xp)
    held = _EAGER.get(ops.device_id)
    if held is not None and held[0] is cp:
        return held[1]
    g: Gemm | None
    try:
        from cupy_backends.cuda.libs import cublas

        with ops.activate():
            g = Gemm(cp, _CupyLowLevel(cublas))
    except (ImportError, RuntimeError, OSError):  # a CuPy without cuBLAS (not found, or no handle)
        g = None
    _EAGER[ops.device_id] = (cp, g)
    return g


@contextmanager
def routed(ops: Any) -> Iterator[Gemm | None]:
    """Inside: `ops.matmul` of 2-D float arrays goes through cuBLAS directly (capturable); a no-op off CuPy."""
    if getattr(ops, "name", "") != "cupy":
        yield None
        return
    saved = ops.blas
    ops.blas = gemm_for(ops)
    try:
        yield ops.blas
    finally:
        ops.blas = saved
