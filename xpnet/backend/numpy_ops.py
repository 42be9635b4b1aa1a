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

    def dense_forward(self, x: Array, w: Array, b: Array | None, act: Any) -> tuple[Array, Array]:
        u = np.matmul(x, w)
        if b is not None:
            u += b
        name = act.name
        if name == "relu":
            return u, np.maximum(u, 0.0, dtype=u.dtype)
        if name == "linear":
            return u, u
        if name == "softmax" and u.ndim == 2:
            h = u - u.max(axis=1, keepdims=True)
            np.exp(h, out=h)
            h /= h.sum(axis=1, keepdims=True)
            return u, h
        return u, act.forward(np, u)

    def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        if act.name == "relu":
            # dh is a fresh temporary from the layer above, so it can take the result
            return np.multiply(dh, u > 0.0, out=dh) if dh.flags.writeable else dh * (u > 0.0)
        return act.backward(np, u, h, dh)

    def bias_grad(self, du: Array, out: Array) -> None:
        np.sum(du, axis=0, out=out)

    def loss_from_preactivation(self, loss: Any, y: Array, u: Array, scale: float) -> tuple[Array, Array]:
        if loss.name != "sparse_categorical_crossentropy" or u.ndim != 2:
            return super().loss_from_preactivation(loss, y, u, scale)
        rows = np.arange(u.shape[0])
        z = u - u.max(axis=1, keepdims=True)
        p = np.exp(z)
        s = p.sum(axis=1)
        value = np.log(s) - z[rows, y]
        p /= s[:, None]
        p[rows, y] -= 1.0
        p *= scale
        return value, p

    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: float, momentum: float, nesterov: bool) -> None:
        if m is None:
            if lr == 1.0:  # gradients arrive pre-scaled by the learning rate: one pass over the model
                np.subtract(p, g, out=p)
            else:
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
