"""Compiled loops for the NumPy backend's image layers, used when numba is installed (`xpnet[jit]`).

NumPy runs 2×2 max pooling as several passes over strided pairs plus boolean masks, and the
im2col of a convolution as a padded copy and a strided copy: on LeNet these passes, not the
GEMMs, kept a 2-core CPU step behind PyTorch's. Each kernel here does the same arithmetic in one
or two loops that LLVM vectorises, and gives the same numbers and the same argmax (first maximum
in row-major order; a NaN propagates to the output, as with np.maximum, but does not take the
gradient, as with np.greater) as the NumPy code it replaces; tests compare the two. Equal as
values: the sign of a zero may differ (np.maximum's choice between −0 and +0 is the CPU's), and
a NaN or inf gradient reaches only the window's winner, where NumPy's masks spread NaN to all four.

`XPNET_JIT=0` turns them off. Kernels compile on first use and are cached on disk by numba
(or only in memory where numba finds nowhere to write its cache).
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order only


def wanted() -> bool:
    return os.environ.get("XPNET_JIT", "1").strip().lower() not in ("0", "false", "no", "off")


@cache
def kernels() -> Any:
    """The compiled kernels, or None where numba is not installed (or cannot be used: with a warning)."""
    try:
        import numba
    except ImportError:
        return None
    if getattr(numba.config, "DISABLE_JIT", False):  # NUMBA_DISABLE_JIT=1: plain Python loops, 70x slower
        return None
    try:
        return _define(numba, cache=True)
    except Exception:  # numba raises at definition when it finds no directory to cache in
        try:
            return _define(numba, cache=False)
        except Exception as e:
            warnings.warn(f"numba's kernels could not be built ({e}); using NumPy's code", RuntimeWarning, stacklevel=2)
            return None


def _define(numba: Any, cache: bool) -> SimpleNamespace:
    jit = numba.njit(cache=cache, nogil=True, error_model="numpy")

    @jit  # type: ignore[misc]
    def pool2x2_forward(src, wp, tmp, right, y, lower, positive, relu):  # type: ignore[no-untyped-def]
        """src: flat (rows·2, wp) buffer; y, lower, positive: flat (rows, wp/2); tmp, right: flat (rows·2, wp/2)."""
        for k in range(tmp.size):  # the max of each column pair, and whether the right one won
            a = src[2 * k]
            b = src[2 * k + 1]
            r = b > a  # the flag as np.greater sets it, the value as np.maximum (NaN wins)
            tmp[k] = b if r | (b != b) else a
            right[k] = r
        half = wp // 2
        zero = y.dtype.type(0)
        for i in range(y.size // half):  # the max of each row pair, and whether the lower one won
            up = 2 * i * half
            for q in range(half):
                a = tmp[up + q]
                b = tmp[up + half + q]
                low = b > a
                m = b if low | (b != b) else a
                if relu:
                    pos = m > zero
                    positive[i * half + q] = pos
                    m = m if pos | (m != m) else zero
                y[i * half + q] = m
                lower[i * half + q] = low

    @jit  # type: ignore[misc]
    def pool2x2_backward(dy, half, right, lower, positive, relu, tmp, dx):  # type: ignore[no-untyped-def]
        """dy: flat (rows, wp/2), 0 in the extra columns; masks as in the forward; tmp: (rows·2, wp/2); dx flat."""
        zero = dx.dtype.type(0)
        for i in range(dy.size // half):  # dy to the winning row of each pair
            o = i * half
            for q in range(half):
                d = dy[o + q]
                if relu:
                    d = d if positive[o + q] else zero
                low = lower[o + q]
                tmp[o + o + q] = zero if low else d
                tmp[o + o + half + q] = d if low else zero
        for k in range(tmp.size):  # then to the winning column
            d = tmp[k]
            r = right[k]
            dx[2 * k] = zero if r else d
            dx[2 * k + 1] = d if r else zero

    @jit  # type: ignore[misc]
    def adam_update(p, g, m, v, lr_t, c1, c2, eps):  # type: ignore[no-untyped-def]
        """One pass of `NumpyOps.adam_update` over flat buffers: the same roundings in the same order.

        c1 = 1 − β₁, c2 = 1 − β₂, eps and lr_t in p's dtype (what NumPy casts the Python floats to).
        """
        for i in range(p.size):
            gi = g[i]
            mi = m[i] + (gi - m[i]) * c1
            vi = v[i] + (gi * gi - v[i]) * c2
            m[i] = mi
            v[i] = vi
            p[i] = p[i] - (mi / (np.sqrt(vi) + eps)) * lr_t

    @jit  # type: ignore[misc]
    def dropout_apply(x, start, k1, threshold, scale, mask, y):  # type: ignore[no-untyped-def]
        """One pass of `NumpyOps.dropout_mask` and x · mask over flat buffers of one dtype: the same hash.

        Element i hashes (start + i) mod 2³² with key k1; kept (hash ≥ threshold) it gets mask = scale,
        else +0. start, k1, threshold: ints below 2³²; the hash runs in int64, masked to 32 bits.
        """
        zero = scale - scale
        for i in range(x.size):
            h = ((start + i) & 0xFFFFFFFF) ^ k1
            h ^= h >> 16
            h = (h * 0x7FEB352D) & 0xFFFFFFFF
            h ^= h >> 15
            h = (h * 0x846CA68B) & 0xFFFFFFFF
            h ^= h >> 16
            m = scale if h >= threshold else zero
            mask[i] = m
            y[i] = x[i] * m

    return SimpleNamespace(
        numba=numba.__version__,
        pool2x2_forward=pool2x2_forward,
        pool2x2_backward=pool2x2_backward,
        adam_update=adam_update,
        dropout_apply=dropout_apply,
    )
