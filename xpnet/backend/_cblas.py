"""The NumPy backend's GEMMs through CBLAS: NumPy's own BLAS, or Intel MKL where the `mkl` extra is installed.

One call NumPy cannot express: C ← C − AᵀB. Plain SGD ends each step with w ← w − η∇w. NumPy
writes ∇w = xᵀδ into a buffer with one GEMM and subtracts it in a second pass over the weights,
run by the main thread. At small batches that pass is costly beyond its own time: the BLAS
threads that read w in the next forward GEMM find it modified in another core's cache. GEMM with
β = 1 does both at once, in the BLAS threads. NumPy does not export CBLAS, so the symbol is looked
up in the BLAS library NumPy has already loaded (Linux: /proc/self/maps) and checked against
`np.matmul` on a small product before it is trusted. Where any of this fails, `find()` returns
None and callers use NumPy.

A second library for every GEMM: MKL's sgemm ran model A's products 1.1-1.5x faster than NumPy's
OpenBLAS at one thread on this project's machine (BENCHMARKS.md, "MKL"). `library()` gives the
`Blas` that `XPNET_BLAS` names (auto: MKL when the `mkl` package is installed, else NumPy's own);
the NumPy backend then sends `matmul`, `gemm_sub` and their bound forms in a replayed step to it.
Results differ from OpenBLAS's in the last bits (another summation order); within one library the
replayed and the eager step stay bit-identical, since both make the same calls on the same layouts.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import threading
from collections.abc import Callable, Mapping
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
            raw = lib[f"{prefix}{letter}gemm{suffix}"]  # the same symbol, another object: no argtypes to convert by
            raw.restype = None
            _RAW[id(fn)] = raw
        if len(fns) == 2:
            return fns
    return None


# id(bound function) -> the same symbol without argtypes, for `_fixed`
_RAW: dict[int, Any] = {}


def _fixed(fn: Any, args: tuple[Any, ...]) -> Callable[[], None]:
    """fn(*args) as one call with no Python frame, its arguments converted to ctypes objects once, here:
    converting 14 Python arguments by argtypes took 1.6 µs a call, passing ready ones 0.8 µs."""
    raw = _RAW.get(id(fn))
    if raw is None:
        return partial(fn, *args)
    return partial(raw, *(kind(value) for kind, value in zip(fn.argtypes, args, strict=True)))


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
    """c −= aᵀb as a call on fixed addresses by the library `XPNET_BLAS` selects (`Blas.bound_gemm_sub`)."""
    return library().bound_gemm_sub(a, b, c)


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
    """`Blas.shifted_gemm_sub` of the library `XPNET_BLAS` selects."""
    return library().shifted_gemm_sub(a, b, buf, ldc, offsets)


def _shifted(
    fns: Mapping[np.dtype, Callable[..., None]],
    a: np.ndarray,
    b: np.ndarray,
    buf: np.ndarray,
    ldc: int,
    offsets: list[int],
) -> bool:
    """For each t: C_t −= a[t]ᵀ b, C_t the (m, n) rows buf[r·ldc + o_t : r·ldc + o_t + n], o_t = offsets[t].

    a (T, k, m), b (k, n), buf 1-D. The convolution's input gradient: kh·kw products into shifted
    column ranges of one buffer, with the checks and addresses of `gemm_sub` done once instead of
    per product. All arrays C-contiguous and distinct; False (nothing done) where that or BLAS is missing.
    """
    fn = fns.get(buf.dtype)
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


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) that lets row-major CBLAS read the 2-D x as it lies in memory:
    rows of contiguous elements (x itself) or columns of them (a transposed view), else None."""
    item, (rows, cols), (s0, s1) = x.itemsize, x.shape, x.strides
    if s0 % item or s1 % item:
        return None
    if s1 == item or cols == 1:
        ld = s0 // item if rows > 1 else cols
        return (_NO_TRANS, ld) if cols <= ld < _INT_MAX else None
    if s0 == item or rows == 1:
        ld = s1 // item if cols > 1 else rows
        return (_TRANS, ld) if rows <= ld < _INT_MAX else None
    return None


def _gemm_kind(fns: Mapping[np.dtype, Callable[..., None]], a: Any, b: Any, out: Any) -> Any:
    """`_gemm_call`'s checks that depend on the arrays' types, dtypes, shapes and strides and out's writability
    alone, so that they hold for every array of that kind: (the BLAS function, its arguments with None for the
    three addresses), or None where such arrays do not suit one GEMM."""
    if not (type(a) is type(b) is type(out) is np.ndarray) or not a.ndim == b.ndim == out.ndim == 2:
        return None
    fn = fns.get(out.dtype)
    (m, k), n = a.shape, b.shape[1]
    if fn is None or a.dtype != out.dtype or b.dtype != out.dtype or b.shape[0] != k or out.shape != (m, n):
        return None
    if m == 0 or n == 0 or k == 0 or max(m, n, k) >= _INT_MAX or not out.flags.writeable:
        return None
    la, lb, lc = _operand(a), _operand(b), _operand(out)
    if la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
        return None
    return fn, (_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, None, la[1], None, lb[1], 0.0, None, lc[1])


def _gemm_call(fns: Mapping[np.dtype, Callable[..., None]], a: Any, b: Any, out: Any) -> Any:
    """(the BLAS function, its arguments) for out = a @ b as one GEMM, or None where the arrays do not suit
    it: a (m, k), b (k, n), out (m, n) ndarrays of one float dtype, none empty, out writable in row layout
    and overlapping neither input."""
    kind = _gemm_kind(fns, a, b, out)
    if kind is None or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    fn, args = kind
    return fn, (*args[:7], _address(a), args[8], _address(b), args[10], args[11], _address(out), args[13])


class Blas:
    """One BLAS library's GEMMs for the NumPy backend, eager and bound for a replayed step.

    name: "openblas" (NumPy's own library, OpenBLAS in NumPy's wheels) or "mkl"; label: the library in
    words, for reports. `matmul(a, b, out=None)` is `np.matmul` itself for NumPy's own library; for
    MKL a function that sends 2-D float32/float64 products of row or transposed layouts to MKL's
    GEMM and everything else (stacks, other dtypes, element-strided views, empty arrays) to np.matmul.
    """

    def __init__(self, name: str, label: str, fns: Mapping[np.dtype, Callable[..., None]] | None) -> None:
        self.name, self.label, self.fns = name, label, dict(fns or {})
        self.gemm_sub: GemmSub | None = _make(self.fns) if self.fns else None
        # NumPy's own: np.matmul itself, so the default path runs exactly the calls it ran before MKL existed
        self.matmul: Callable[..., Any] = self._gemm if name == "mkl" else np.matmul

    def _gemm(self, a: Any, b: Any, out: Any = None) -> Any:
        """a @ b by MKL's GEMM where `_gemm_call` allows, else np.matmul: a (m, k), b (k, n) -> (m, n)."""
        target = out
        if out is None and getattr(a, "ndim", 0) == 2 and getattr(b, "ndim", 0) == 2 and a.dtype == b.dtype:
            target = np.empty((a.shape[0], b.shape[1]), a.dtype)
        call = None if target is None else _gemm_call(self.fns, a, b, target)
        if call is None:
            return np.matmul(a, b, out=out)
        call[0](*call[1])
        return target

    def gemm_kind(self, a: Any, b: Any, out: Any = None) -> Any:
        """`_gemm_kind` for `matmul(a, b, out)` (out None: the C-ordered result it would make), None for np.matmul.
        `NumpyOps` asks once per kind of operands and then calls the GEMM itself (an eager step's products)."""
        if self.name != "mkl":
            return None
        if out is None:
            if getattr(a, "ndim", 0) != 2 or getattr(b, "ndim", 0) != 2 or a.dtype != b.dtype:
                return None
            out = np.empty((a.shape[0], b.shape[1]), a.dtype)
        return _gemm_kind(self.fns, a, b, out)

    def bound_matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Callable[[], object]:
        """out = a @ b on fixed arrays as one call with no Python frame: the same GEMM `matmul` makes for them."""
        call = _gemm_call(self.fns, a, b, out) if self.name == "mkl" else None
        return partial(np.matmul, a, b, out) if call is None else _fixed(*call)

    def bound_gemm_sub(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Callable[[], None] | None:
        """c −= aᵀb as a call on fixed addresses, for arrays that keep their memory (a replayed step's
        buffers): the checks and the address look-ups done once, here. None where `gemm_sub` would refuse."""
        call = _gemm_sub_call(self.fns, a, b, c)
        return None if call is None else _fixed(*call)

    def shifted_gemm_sub(self, a: np.ndarray, b: np.ndarray, buf: np.ndarray, ldc: int, offsets: list[int]) -> bool:
        """`_shifted` by this library: the convolution's input gradient."""
        return _shifted(self.fns, a, b, buf, ldc, offsets)

    def __repr__(self) -> str:
        return f"Blas({self.name!r}, {self.label!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Blas:
        return self  # one per library and process: what it holds are the library's own functions

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return library, (self.name,)  # loaded again by name in the process that unpickles it


BLAS_VAR = "XPNET_BLAS"
_CHOICES = ("auto", "openblas", "mkl")
# MKL_Set_Threading_Layer's codes
_MKL_LAYERS = {"intel": 0, "sequential": 1, "gnu": 3, "tbb": 4}
_THREAD_VARS = ("XPNET_BLAS_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def choice(env: Mapping[str, str] | None = None, source: str = BLAS_VAR) -> str:
    """`XPNET_BLAS` read: "auto" (unset or empty), "openblas" or "mkl"; ValueError naming `source` (the variable,
    or the argument that gave the value) and any other value."""
    raw = (os.environ if env is None else env).get(BLAS_VAR, "")
    value = raw.strip().lower() or "auto"
    if value not in _CHOICES:
        raise ValueError(f"{source} must be auto, openblas or mkl, received {raw!r}")
    return value


def mkl_path() -> str | None:
    """libmkl_rt of the installed `mkl` distribution (PyPI's wheel puts it in sys.prefix/lib), else None."""
    return _package_library("mkl", "libmkl_rt.")


def thread_setting(env: Mapping[str, str] | None = None) -> int | None:
    """The BLAS thread count the user set (XPNET_BLAS_THREADS, MKL_NUM_THREADS, OMP_NUM_THREADS), else None."""
    env = os.environ if env is None else env
    for var in _THREAD_VARS:
        text = env.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def mkl_layer(env: Mapping[str, str] | None = None, cores: int | None = None) -> str:
    """The threading layer MKL gets: the user's MKL_THREADING_LAYER, else "sequential" where one thread is all
    this process will ask for (its thread setting, or one usable core), else "tbb".

    TBB's workers sleep soon after a product; Intel OpenMP's spin 200 ms by default (KMP_BLOCKTIME),
    on the cores that NumPy, numba and OpenBLAS need between two GEMMs. Model A's step with MKL at
    2 threads took 0.53 ms of CPU under TBB, 1.06 under Intel OpenMP, 0.90 with KMP_BLOCKTIME=0
    (sequential: 0.38; BENCHMARKS.md, "MKL").
    """
    env = os.environ if env is None else env
    user = env.get("MKL_THREADING_LAYER", "").strip().lower()
    if user:
        return user
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    return "sequential" if thread_setting(env) == 1 or cores <= 1 else "tbb"


def _package_library(dist: str, prefix: str) -> str | None:
    """A shared library of an installed distribution (its file name starting with `prefix`), else None."""
    try:
        found = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in found.files or []:
        if f.name.startswith(prefix) and ".so" in f.name:
            path = os.path.normpath(str(found.locate_file(f)))
            if os.path.exists(path):
                return path
    return None


def _load_mkl(path: str) -> Blas | None:
    """MKL's GEMMs, its threading layer set before its first call; None where it fails to load or to compute."""
    layer = mkl_layer()
    users = os.environ.get("MKL_THREADING_LAYER", "").strip()  # MKL reads the user's variable itself
    try:
        if layer == "tbb":  # MKL opens libtbb by name, which the tbb package's lib folder is not on the path for
            tbb = _package_library("tbb", "libtbb.so.12")
            if tbb is None and users:
                return None  # the user's TBB layer without libtbb: MKL would end the process at its first call
            if tbb is None:
                layer = "intel"
                os.environ.setdefault("KMP_BLOCKTIME", "0")  # read when Intel OpenMP starts, at MKL's first call
            else:
                ctypes.CDLL(tbb, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(path)
        if not users:
            lib.MKL_Set_Threading_Layer(_MKL_LAYERS[layer])
        threads = thread_setting()
        if threads is not None:
            lib.MKL_Set_Num_Threads(threads)
    except (OSError, AttributeError, KeyError):
        return None
    fns = _bind(path)
    if fns is None or not _works(_make(fns)):
        return None
    try:
        version = importlib.metadata.version("mkl")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return Blas("mkl", f"MKL {version} ({layer})", fns)


def _numpy_blas() -> Blas:
    gemm_sub = find()
    fns = getattr(gemm_sub, "fns", None)
    return Blas("openblas", "NumPy's BLAS" + ("" if fns else " (no CBLAS symbols: NumPy only)"), fns)


_libraries: dict[str, Blas] = {}
_lock = threading.Lock()


def library(name: str | None = None) -> Blas:
    """The `Blas` named (None: as `XPNET_BLAS` says): "openblas", "mkl", or "auto" (MKL when installed and
    loadable, else NumPy's). Each library is loaded once per process. ImportError where "mkl" is asked for
    and missing; ValueError for an unknown name."""
    wanted = choice() if name is None else choice({BLAS_VAR: name}, "blas")
    with _lock:
        if wanted not in _libraries:
            _libraries[wanted] = _resolve(wanted)
        return _libraries[wanted]


def _resolve(wanted: str) -> Blas:
    # XPNET_NO_CBLAS=1 asks for NumPy's own calls only: no library reached through ctypes unless named
    if wanted == "openblas" or (wanted == "auto" and os.environ.get("XPNET_NO_CBLAS", "") not in ("", "0")):
        return _numpy_blas()
    path = mkl_path()
    if path is None and wanted == "mkl":
        raise ImportError(f"{BLAS_VAR}=mkl, but MKL is not installed: pip install 'xpnet[mkl]' (or unset {BLAS_VAR})")
    loaded = _libraries.get("mkl") or (None if path is None else _load_mkl(path))
    if loaded is None and wanted == "mkl":
        raise ImportError(f"{BLAS_VAR}=mkl: {path} did not load or failed its check; unset {BLAS_VAR} to use NumPy's")
    if loaded is not None:
        _libraries["mkl"] = loaded
    return loaded or _libraries.get("openblas") or _libraries.setdefault("openblas", _numpy_blas())
