"""Metric kernels for the CuPy backend: a batch's metric state in one launch.

The plain code of a sparse accuracy is argmax, equal, count_nonzero and a cast: four launches
per step on CuPy. Here a small batch (a few thousand scores) is walked by one thread, so the
state comes out of one launch; a larger one gets a thread per row, each adding its hit to a
zeroed count (a fill and one launch): whole numbers add exactly in any order, so the count does
not depend on the threads' timing. Both keep the plain code's tie and NaN rules. Nothing here
imports cupy: the namespace in use is passed in.
"""

from __future__ import annotations

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
_PARALLEL_HITS = "const long long r = i;" + _ROW_HIT + "if (hit) atomicAdd(&out[0], (T)1);"

SERIAL_LIMIT = 4096  # scores one thread walks; past it a thread per row (a long serial loop loses to a fill)

_kernels: dict[Any, Any] = {}


def sparse_hits(xp: Any, y_true: Array, y_pred: Array) -> Array | None:
    """Rows whose argmax over the last axis equals the label, as a 0-d array of y_pred's dtype, in one launch.

    y_pred: (..., k) float32/float64 scores, C-contiguous; y_true: labels shaped y_pred.shape[:-1],
    any real dtype. Returns None where the plain code must run instead: a namespace without
    `ElementwiseKernel` (NumPy and other array libraries), other layouts, dtypes or shapes.
    """
    kernel_type = getattr(xp, "ElementwiseKernel", None)
    if kernel_type is None or not isinstance(y_pred, xp.ndarray) or not isinstance(y_true, xp.ndarray):
        return None
    if (
        y_pred.ndim < 1
        or y_pred.shape[-1] == 0
        or tuple(y_true.shape) != tuple(y_pred.shape[:-1])
        or y_pred.dtype.char not in "fd"
        or y_true.dtype.kind not in "iuf"
        or not (y_pred.flags.c_contiguous and y_true.flags.c_contiguous)
    ):
        return None
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


def _kernel(kernel_type: Any, form: str) -> Any:
    kernel = _kernels.get((kernel_type, form))
    if kernel is None:
        if form == "serial":
            args = ("raw T p, raw Y y, int64 rows, int64 k", "T out", _SERIAL_HITS, "xpnet_sparse_hits")
        else:
            args = ("raw T p, raw Y y, int64 k", "raw T out", _PARALLEL_HITS, "xpnet_sparse_hits_rows")
        kernel = _kernels[(kernel_type, form)] = kernel_type(*args)
    return kernel
