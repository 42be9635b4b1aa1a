"""One BLAS call NumPy cannot express: C ← C − AᵀB, straight into NumPy's own BLAS library.

Plain SGD ends each step with w ← w − η∇w. NumPy writes ∇w = xᵀδ into a buffer with one GEMM
and subtracts it in a second pass over the weights, run by the main thread. At small batches
that pass is costly beyond its own time: the BLAS threads that read w in the next forward
GEMM find it modified in another core's cache. GEMM with β = 1 does both at once, in the BLAS
threads. NumPy does not export CBLAS, so the symbol is looked up in the BLAS library NumPy has
already loaded (Linux: /proc/self/maps) and checked against `np.matmul` on a small product
before it is trusted. Where any of this fails, `find()` returns None and callers use NumPy.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_INT_MAX = 2**31  # sizes from here on would wrap in an LP64 library's C int: NumPy does those products

# (symbol prefix, suffix, integer type): NumPy ≥ 2 wheels (scipy-openblas, ILP64), NumPy 1.x
# wheels (openblas64_), and LP64 CBLAS libraries (system OpenBLAS, MKL, BLIS, reference).
_SYMBOLS = (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64), ("cblas_", "", ctypes.c_int))

GemmSub = Callable[[np.ndarray, np.ndarray, np.ndarray], bool]


def _loaded_blas_paths() -> list[str]:
    """BLAS libraries in this process that may be NumPy's: its own bundled copy first, then system ones.

    Libraries bundled with other packages (SciPy, PyTorch, ...) are left out: their thread pools
    are not NumPy's, and calling them would put two pools on the same cores.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    names = ("openblas", "blas", "mkl_rt", "blis")
    numpy_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))  # site-packages
    ranked = []
    for p in paths:
        if not p.startswith("/") or not any(n in os.path.basename(p).lower() for n in names):
            continue
        rel = os.path.relpath(p, numpy_dir)
        if rel.startswith(("numpy.libs", "numpy" + os.sep, "numpy/.dylibs")):
            ranked.append((0, p))
        elif "-packages" + os.sep not in p:  # not some other package's private copy
            ranked.append((1, p))
    return [p for _, p in sorted(ranked)]


def _bind(path: str) -> dict[np.dtype, Callable[..., None]] | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for prefix, suffix, blasint in _SYMBOLS:
        if not suffix and "64" in os.path.basename(path):
            continue  # unsuffixed names in an ILP64 build would take 64-bit integers, not C ints
        fns = {}
        for letter, ctype, dtype in (("s", ctypes.c_float, np.float32), ("d", ctypes.c_double, np.float64)):
            fn = getattr(lib, f"{prefix}{letter}gemm{suffix}", None)
            if fn is None:
                break
            p = ctypes.c_void_p
            fn.argtypes = [ctypes.c_int] * 3 + [blasint] * 3 + [ctype, p, blasint, p, blasint, ctype, p, blasint]
            fn.restype = None
            fns[np.dtype(dtype)] = fn
        if len(fns) == 2:
            return fns
    return None


def _address(m: np.ndarray) -> int:
    try:  # ~3x cheaper than m.ctypes.data, for the writable contiguous arrays of a training step
        return ctypes.addressof(ctypes.c_char.from_buffer(m))  # type: ignore[arg-type]  # ndarray is a buffer
    except (TypeError, ValueError, BufferError):  # read-only or row-strided: numpy's own accessor
        return int(m.ctypes.data)


def _suits_gemm_sub(fn: Any, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    """Whether c −= aᵀb is one GEMM by `fn`: 2-D arrays of c's dtype, aligned shapes, none empty, c writable
    and overlapping neither (BLAS reads a and b while writing c)."""
    if fn is None or a.dtype != c.dtype or b.dtype != c.dtype or not a.ndim == b.ndim == c.ndim == 2:
        return False
    if a.shape[0] != b.shape[0] or c.shape != (a.shape[1], b.shape[1]) or a.size == 0 or c.size == 0:
        return False
    return bool(c.flags.writeable) and not np.may_share_memory(c, a) and not np.may_share_memory(c, b)


def _leading_dims(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[int, int, int] | None:
    """(lda, ldb, ldc): the row strides in elements, or None where the layout does not suit BLAS: rows may be
    strided (a row slice of a wider array), elements may not, and every size must fit the library's int."""
    item = c.itemsize
    (sa, ta), (sb, tb), (sc, tc) = a.strides, b.strides, c.strides
    if ta != item or tb != item or tc != item or sa % item or sb % item or sc % item:
        return None
    lda, ldb, ldc = sa // item, sb // item, sc // item
    if lda < a.shape[1] or ldb < b.shape[1] or ldc < c.shape[1] or max(lda, ldb, ldc, a.shape[0]) >= _INT_MAX:
        return None
    return lda, ldb, ldc


def _gemm_sub_call(fns: dict[np.dtype, Callable[..., None]], a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Any:
    """(the BLAS function, its arguments) for c −= aᵀb, or None where the arrays do not suit it."""
    fn = fns.get(c.dtype)
    if not _suits_gemm_sub(fn, a, b, c):
        return None
    lds = _leading_dims(a, b, c)
    if lds is None:
        return None
    lda, ldb, ldc = lds
    return fn, (_ROW_MAJOR, _TRANS, _NO_TRANS, c.shape[0], c.shape[1], a.shape[0], -1.0, _address(a), lda,
                _address(b), ldb, 1.0, _address(c), ldc)  # fmt: skip


def _make(fns: dict[np.dtype, Callable[..., None]]) -> GemmSub:
    def gemm_sub(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
        """c -= a.T @ b in place for 2-D a (k, m), b (k, n), c (m, n); False (nothing done) if unsupported."""
        call = _gemm_sub_call(fns, a, b, c)
        if call is None:
            return False
        call[0](*call[1])
        return True

    gemm_sub.fns = fns  # type: ignore[attr-defined]  # for `shifted_gemm_sub` and `bound_gemm_sub`
    return gemm_sub


def bound_gemm_sub(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Callable[[], None] | None:
    """c −= aᵀb as a call on fixed addresses, for arrays that keep their memory (a replayed step's
    buffers): the checks and the address look-ups done once, here. None where `gemm_sub` would refuse."""
    call = _gemm_sub_call(getattr(find(), "fns", {}), a, b, c)
    if call is None:
        return None
    fn, args = call
    return partial(fn, *args)  # the ctypes function itself: no Python frame per call


def _works(gemm_sub: GemmSub) -> bool:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a: np.ndarray
        b: np.ndarray
        a, b = rng.standard_normal((37, 19)).astype(dtype), rng.standard_normal((37, 23)).astype(dtype)
        wide = rng.standard_normal((19, 30)).astype(dtype)
        c = wide[:, :23]  # a strided row layout, as the check of `lds` allows
        want = c - a.T @ b
        if not gemm_sub(a, b, c) or not np.allclose(c, want, rtol=1e-4, atol=1e-4):
            return False
    return True


_found: list[GemmSub | None] = []


def find() -> GemmSub | None:
    """`gemm_sub(a, b, c)` bound to NumPy's BLAS, or None when it cannot be found or fails its check."""
    if not _found:
        _found.append(None)
        if os.environ.get("XPNET_NO_CBLAS", "") not in ("", "0"):
            return None
        np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded before looking for it
        for path in _loaded_blas_paths():
            fns = _bind(path)
            if fns is not None and _works(f := _make(fns)):
                _found[0] = f
                break
    return _found[0]


def shifted_gemm_sub(a: np.ndarray, b: np.ndarray, buf: np.ndarray, ldc: int, offsets: list[int]) -> bool:
    """For each t: C_t −= a[t]ᵀ b, C_t the (m, n) rows buf[r·ldc + o_t : r·ldc + o_t + n], o_t = offsets[t].

    a (T, k, m), b (k, n), buf 1-D. The convolution's input gradient: kh·kw products into shifted
    column ranges of one buffer, with the checks and addresses of `gemm_sub` done once instead of
    per product. All arrays C-contiguous and distinct; False (nothing done) where that or BLAS is missing.
    """
    fn = getattr(find(), "fns", {}).get(buf.dtype)
    if fn is None or not _suits_shifted(a, b, buf, ldc, offsets):
        return False
    item = buf.itemsize
    (_, k, m), n = a.shape, b.shape[1]
    pa, pb, pc = int(a.ctypes.data), int(b.ctypes.data), int(buf.ctypes.data)
    for t, o in enumerate(offsets):
        fn(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, -1.0, pa + t * k * m * item, m, pb, n, 1.0, pc + o * item, ldc)
    return True


def _suits_shifted(a: np.ndarray, b: np.ndarray, buf: np.ndarray, ldc: int, offsets: list[int]) -> bool:
    """Whether `shifted_gemm_sub`'s arrays suit BLAS: a (T, k, m), b (k, n), buf 1-D, of one dtype, every
    shifted C_t inside buf, all C-contiguous and nonempty, buf writable and overlapping neither."""
    if a.dtype != b.dtype or b.dtype != buf.dtype or (a.ndim, b.ndim, buf.ndim) != (3, 2, 1):
        return False
    if a.shape[0] != len(offsets) or a.shape[1] != b.shape[0] or b.shape[1] > ldc or a.size == 0 or b.size == 0:
        return False
    if any(o < 0 for o in offsets) or (a.shape[2] - 1) * ldc + max(offsets, default=0) + b.shape[1] > buf.size:
        return False
    if not (a.flags.c_contiguous and b.flags.c_contiguous and buf.flags.c_contiguous and buf.flags.writeable):
        return False
    return not np.may_share_memory(buf, a) and not np.may_share_memory(buf, b) and max(buf.size, a.shape[1]) < _INT_MAX
