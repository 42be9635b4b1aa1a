"""Metric kernels for the CuPy backend: a batch's metric state in one launch.

The plain code of a sparse accuracy is argmax, equal, count_nonzero and a cast: four launches
per step on CuPy. Here a small batch (a few thousand scores) is walked by one thread, so the
state comes out of one launch; a larger one gets a thread per row, each adding its hit to a
zeroed count (a fill and one launch): whole numbers add exactly in any order, so the count does
not depend on the threads' timing. Both keep the plain code's tie and NaN rules. Nothing here
imports cupy: the namespace in use is passed in.
"""

from __future__ import annotations

import sys
from typing import Any

Array = Any

# NumPy's argmax: the first maximum, and a NaN counts as the maximum (the first NaN wins), so the
# scan stops moving once `best` is NaN. A label compares as NumPy's `equal` does after promotion:
# integers exactly, floats by value (2.0 hits class 2, 2.5 none); double holds every class index.
_ROW_HIT = """
  const T* row = &p[r * k];
  T best = row[0]; long long at = 0;
  for (long long j = 1; j < k && best == best; ++j) {
    const T v = row[j];
    if (v > best || v != v) { best = v; at = j; }
  }
  const bool hit = (double)at == (double)y[r];
"""
_SERIAL_HITS = "long long hits = 0; for (long long r = 0; r < rows; ++r) {" + _ROW_HIT + "hits += hit; } out = (T)hits;"
# the loss sum in row order, then the count: a step's two batch sums from one thread
_LOSS_AND_HITS = "T s = 0; for (long long r = 0; r < n; ++r) s += v[r]; loss = s;" + _SERIAL_HITS
# A thread per row: each adds (1 << 32) | hit to one 64-bit word, so the thread that draws the last
# ticket holds the whole count without a fence, sums the losses in row order (the serial form's bits)
# and puts the word back to 0 for the next launch.
_PARALLEL_LOSS_AND_HITS = (
    "const long long r = i;"
    + _ROW_HIT
    # CuPy declares a uint64 as unsigned long: the atomics take unsigned long long
    + "unsigned long long* word = (unsigned long long*)&ticket[0];"
    "const unsigned long long old = atomicAdd(word, (1ULL << 32) | (hit ? 1ULL : 0ULL));"
    "if ((long long)(old >> 32) == rows - 1) {"
    "  T s = 0; for (long long j = 0; j < n; ++j) s += v[j]; loss[0] = s;"
    "  out[0] = (T)((old & 0xFFFFFFFFULL) + (hit ? 1ULL : 0ULL)); atomicExch(word, 0ULL);"
    "}"
)
_PARALLEL_HITS = "const long long r = i;" + _ROW_HIT + "if (hit) atomicAdd(&out[0], (T)1);"

SERIAL_LIMIT = 4096  # scores one thread walks; past it a thread per row (a long serial loop loses to a fill)

_kernels: dict[Any, Any] = {}
_ticket_words: dict[Any, Array] = {}


def sparse_hits(xp: Any, y_true: Array, y_pred: Array) -> Array | None:
    """Rows whose argmax over the last axis equals the label, as a 0-d array of y_pred's dtype, in one launch.

    y_pred: (..., k) float32/float64 scores, C-contiguous; y_true: labels shaped y_pred.shape[:-1],
    any real dtype. Returns None where the plain code must run instead: a namespace without
    `ElementwiseKernel` (NumPy and other array libraries), other layouts, dtypes or shapes.
    """
    if not _fits(xp, y_true, y_pred):
        return None
    kernel_type = xp.ElementwiseKernel
    k = int(y_pred.shape[-1])
    rows = y_pred.size // k
    if y_pred.size <= SERIAL_LIMIT:
        out = xp.empty((), dtype=y_pred.dtype)
        _kernel(kernel_type, "serial")(y_pred, y_true, rows, k, out)
    elif rows < 2**24:  # counts stay exact in float32
        out = xp.zeros((), dtype=y_pred.dtype)
        _kernel(kernel_type, "parallel")(y_pred, y_true, k, out, size=rows)
    else:
        return None
    return out


def has_kernels(xp: Any) -> bool:
    """Whether namespace `xp` compiles elementwise kernels (CuPy): the functions here can return results."""
    return getattr(xp, "ElementwiseKernel", None) is not None


def loss_and_hits(xp: Any, values: Array, y_true: Array, y_pred: Array) -> list[Array] | None:
    """[Σ values, `sparse_hits(y_true, y_pred)`], each a 0-d array of y_pred's dtype, from one launch.

    values: (n,) per-sample losses of y_pred's dtype, C-contiguous, summed in order (not the pairwise
    or tree order of `xp.sum`: equal to it within rounding), the same bits whether one thread walks
    the rows (up to `SERIAL_LIMIT` scores) or a thread per row counts them. None where the plain sums
    must run: a namespace without kernels, other layouts, an empty batch, more than `SERIAL_LIMIT`
    losses (one thread sums them) or 2**24 rows (float32 counts stay exact below).
    """
    if (
        not _fits(xp, y_true, y_pred)
        or not isinstance(values, xp.ndarray)
        or values.ndim != 1
        or values.dtype != y_pred.dtype
        or not values.flags.c_contiguous
        or values.size > SERIAL_LIMIT
        or not 0 < y_pred.size // max(int(y_pred.shape[-1]), 1) < 2**24  # counts stay exact in float32
    ):
        return None
    k = int(y_pred.shape[-1])
    rows = y_pred.size // k
    loss, out = xp.empty((), dtype=y_pred.dtype), xp.empty((), dtype=y_pred.dtype)
    if y_pred.size <= SERIAL_LIMIT:
        _kernel(xp.ElementwiseKernel, "loss")(values, y_pred, y_true, values.size, rows, k, loss, out)
    else:
        ticket = ticket_word(xp)
        _kernel(xp.ElementwiseKernel, "loss_rows")(
            values, y_pred, y_true, values.size, rows, k, ticket, loss, out, size=rows
        )
    return [loss, out]


def ticket_word(xp: Any) -> Array:
    """The zeroed 64-bit word of the current stream on which a launch's threads draw tickets (each launch leaves it 0).

    One per device and stream, so a graph replaying on its own stream never shares it with an eager launch
    (and the legacy stream, ptr 0 on every device, gets one on each); it lives as long as the process,
    as the graphs that may hold its address. Keyed by the array type, not by `xp`: during a recording
    or a capture `xp` is a wrapper holding everything the step made, which a key would keep for good.
    """
    key = (xp.ndarray, xp.cuda.runtime.getDevice(), xp.cuda.get_current_stream().ptr)
    t = _ticket_words.get(key)
    if t is None:
        cp = sys.modules.get("cupy", xp)  # the module itself: the word is no array of the step's
        t = _ticket_words[key] = cp.zeros(1, dtype=cp.uint64)
    return t


def ticket_words(xp: Any, n: int) -> Array:
    """n zeroed 32-bit ticket words of the current stream (uint32, each launch leaves them 0): one per
    column of a launch whose columns each end with a last thread (`ticket_word`'s keying and lifetime)."""
    key = (xp.ndarray, xp.cuda.runtime.getDevice(), xp.cuda.get_current_stream().ptr, n)
    t = _ticket_words.get(key)
    if t is None:
        cp = sys.modules.get("cupy", xp)
        t = _ticket_words[key] = cp.zeros(n, dtype=cp.uint32)
    return t


def add_sums(running: list[Array], batch: list[Array]) -> list[Array] | None:
    """[r + b for each pair] in one launch where every array is a 0-d CuPy array of one dtype (a step's
    running loss and metric sums), else None (the plain adds run). New arrays, as `r + b` gives."""
    cp = sys.modules.get("cupy")  # never imported here: CuPy arrays come only from a loaded CuPy
    if cp is None or not running or len(running) != len(batch) or not has_kernels(cp):
        return None
    arrays = [*running, *batch]
    if not all(isinstance(a, cp.ndarray) and a.ndim == 0 for a in arrays):
        return None
    dtype = running[0].dtype
    if dtype.char not in "fd" or any(a.dtype != dtype for a in arrays):
        return None
    m = len(running)
    out = [cp.empty((), dtype=dtype) for _ in range(m)]
    _adds(cp.ElementwiseKernel, m)(*(a for pair in zip(running, batch, strict=True) for a in pair), *out)
    return out


def _adds(kernel_type: Any, m: int) -> Any:
    """The kernel c_j = a_j + b_j for j < m (0-d arrays: one thread)."""
    kernel = _kernels.get((kernel_type, "adds", m))
    if kernel is None:
        params = ", ".join(f"T a{j}, T b{j}" for j in range(m))
        outs = ", ".join(f"T c{j}" for j in range(m))
        body = " ".join(f"c{j} = a{j} + b{j};" for j in range(m))
        kernel = _kernels[(kernel_type, "adds", m)] = kernel_type(params, outs, body, f"xpnet_add_sums_{m}")
    return kernel


def _fits(xp: Any, y_true: Array, y_pred: Array) -> bool:
    """Whether `sparse_hits`'s kernels take these arrays (see there)."""
    if not has_kernels(xp) or not isinstance(y_pred, xp.ndarray) or not isinstance(y_true, xp.ndarray):
        return False
    return not (
        y_pred.ndim < 1
        or y_pred.shape[-1] == 0
        or tuple(y_true.shape) != tuple(y_pred.shape[:-1])
        or y_pred.dtype.char not in "fd"
        or y_true.dtype.kind not in "iuf"
        or not (y_pred.flags.c_contiguous and y_true.flags.c_contiguous)
    )


def _kernel(kernel_type: Any, form: str) -> Any:
    kernel = _kernels.get((kernel_type, form))
    if kernel is None:
        if form == "loss":
            args = (
                "raw T v, raw T p, raw Y y, int64 n, int64 rows, int64 k",
                "T loss, T out",
                _LOSS_AND_HITS,
                "xpnet_loss_and_hits",
            )
        elif form == "loss_rows":
            args = (
                "raw T v, raw T p, raw Y y, int64 n, int64 rows, int64 k, raw uint64 ticket",
                "raw T loss, raw T out",
                _PARALLEL_LOSS_AND_HITS,
                "xpnet_loss_and_hits_rows",
            )
        elif form == "serial":
            args = ("raw T p, raw Y y, int64 rows, int64 k", "T out", _SERIAL_HITS, "xpnet_sparse_hits")
        else:
            args = ("raw T p, raw Y y, int64 k", "raw T out", _PARALLEL_HITS, "xpnet_sparse_hits_rows")
        kernel = _kernels[(kernel_type, form)] = kernel_type(*args)
    return kernel
