"""NumPy backend: the generic code plus in-place hot spots that avoid temporaries."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from .base import Array, Ops


class NumpyOps(Ops):
    name = "numpy"
    xp = np
    device = None

    def info(self) -> dict[str, str]:
        return {**super().info(), "numpy": np.__version__}

    def activate(self) -> AbstractContextManager[Any]:
        # Diverging runs overflow; fit reports a non-finite loss itself, once, with advice.
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")

    def asarray(self, a: Any, dtype: Any = None) -> Array:
        return np.asarray(a, dtype=dtype)

    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array:
        return np.zeros(shape, dtype=dtype)

    def _to_numpy(self, a: Array) -> np.ndarray:
        return np.asarray(a)

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        return np.matmul(a, b, out=out)

    def affine(self, x: Array, w: Array, b: Array | None) -> Array:
        u = x @ w
        if b is not None:
            u += b
        return u

    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: float, momentum: float, nesterov: bool) -> None:
        if m is None:
            # p -= lr*g without a temporary the size of the model
            p -= np.multiply(g, lr, out=self._scratch(g))
            return
        super().sgd_update(p, g, m, lr, momentum, nesterov)

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: float, beta_1: float, beta_2: float, eps: float
    ) -> None:
        t = self._scratch(g)
        np.subtract(g, m, out=t)
        t *= 1.0 - beta_1
        m += t
        np.multiply(g, g, out=t)
        t -= v
        t *= 1.0 - beta_2
        v += t
        np.sqrt(v, out=t)
        t += eps
        np.divide(m, t, out=t)
        t *= lr_t
        p -= t

    def _scratch(self, like: Array) -> Array:
        buf = getattr(self, "_scratch_buf", None)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = np.empty_like(like)
            self._scratch_buf = buf
        return buf
