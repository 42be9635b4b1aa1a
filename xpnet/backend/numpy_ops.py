"""NumPy backend: the generic code plus in-place hot spots that avoid temporaries."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from . import _cblas
from .base import Array, Ops, builtin_name, mix_int


class NumpyOps(Ops):
    name = "numpy"
    xp = np
    device = None
    # a few MB of activations per block stay in cache between the GEMM, the bias and the activation
    inference_rows = 2048
    # predict() batches of at most this many rows run as uᵀ = Wᵀhᵀ (see `inference_program`)
    transposed_inference_rows: int | None = 256

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

    def take_rows(self, a: Array, idx: Array, out: Array | None = None) -> Array:
        # mode="clip" lets take write straight into `out` (the default mode buffers it); idx is in range
        return np.take(a, idx, axis=0, out=out, mode="clip" if out is not None else "raise")

    def cast(self, x: Array, dtype: Any) -> Array:
        return np.asarray(x, dtype=dtype)

    def subtract_(self, p: Array, g: Array) -> None:
        np.subtract(p, g, out=p)

    def dropout_keys(self, base: int, step: Array) -> tuple[Any, Any]:
        # the counter lives in host memory here: the same keys from Python ints, without 15 tiny array ops
        k0 = mix_int(base ^ mix_int(int(step) ^ 0x85EBCA6B))
        return k0, mix_int(k0 + 0x632BE5AB)

    def dropout_mask(
        self, shape: tuple[int, ...], keys: tuple[Any, Any], rate: float, dtype: Any, offset: Any = 0
    ) -> Array:
        # the generic hash, written in place: 9 passes over uint32 instead of 14 fresh arrays
        n = int(np.prod(shape))
        h = np.add(self.arange_u32(n), np.uint32((int(keys[0]) + int(offset)) & 0xFFFFFFFF))
        h ^= np.uint32(int(keys[1]))
        t = np.empty_like(h)
        for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
            np.right_shift(h, shift, out=t)
            h ^= t
            if mult is not None:
                h *= np.uint32(mult)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        keep = np.greater_equal(h, np.uint32(threshold))
        return np.multiply(keep, 1.0 / (1.0 - rate), dtype=dtype).reshape(shape)

    @property
    def inplace_sgd(self) -> bool:  # type: ignore[override]
        # only with NumPy's BLAS at hand: a GEMM into w, then a bias pass, beats filling grads + one pass
        return _cblas.find() is not None

    def gemm_sub(self, a: Array, b: Array, c: Array) -> None:
        f = self.__dict__.get("_gemm_sub") or self.__dict__.setdefault("_gemm_sub", _cblas.find())
        if f is None or not f(a, b, c):
            np.subtract(c, np.matmul(a.T, b), out=c)

    def bias_sub(self, du: Array, b: Array) -> None:
        np.subtract(b, np.add.reduce(du, axis=0), out=b)

    def allreduce_sum(self, comm: Any, buf: Array) -> None:
        from mpi4py import MPI

        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # straight from the gradient buffer, no copy

    def dense_forward(self, x: Array, w: Array, b: Array | None, act: Any, keep_u: bool = True) -> tuple[Array, Array]:
        u = np.matmul(x, w)
        if b is not None:
            u += b
        return u, self.activation_forward(act, u, in_place=not keep_u)

    def activation_forward(self, act: Any, u: Array, in_place: bool = False) -> Array:
        name = builtin_name(act)
        if name == "relu":
            return np.maximum(u, 0.0, dtype=u.dtype, out=u if in_place else None)
        if name == "linear":
            return u
        if name == "softmax" and u.ndim == 2:
            h = np.subtract(u, np.maximum.reduce(u, axis=1, keepdims=True), out=u if in_place else None)
            np.exp(h, out=h)
            h /= np.add.reduce(h, axis=1, keepdims=True)
            return h
        return act.forward(np, u)

    def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        if builtin_name(act) == "relu":
            # dh is a fresh temporary from the layer above, so it can take the result
            return np.multiply(dh, u > 0.0, out=dh) if dh.flags.writeable else dh * (u > 0.0)
        return act.backward(np, u, h, dh)

    def bias_grad(self, du: Array, out: Array) -> None:
        np.add.reduce(du, axis=0, out=out)

    def fused_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: float) -> tuple[Array, Array, Array]:
        if builtin_name(loss) != "sparse_categorical_crossentropy" or u.ndim != 2:
            return super().fused_loss(loss, act, y, u, scale)
        # 1-D indices of each row's label: a flat take/put is cheaper than u[rows, y]
        idx = self._row_starts(*u.shape) + y
        m = np.maximum.reduce(u, axis=1)
        p = np.subtract(u, m[:, None])
        np.exp(p, out=p)
        s = np.add.reduce(p, axis=1)
        p /= s[:, None]
        value = np.log(s)
        value += m
        value -= u.reshape(-1).take(idx)
        grad = np.multiply(p, scale)
        grad.reshape(-1)[idx] -= scale
        # with from_logits the model's output is u itself, not the softmax the loss needed
        return value, grad, p if builtin_name(act) == "softmax" else act.forward(np, u)

    def _row_starts(self, n: int, k: int) -> Array:
        r = getattr(self, "_row_starts_cache", None)
        if r is None or r.shape[0] != n or (n > 1 and r[1] != k):
            r = self._row_starts_cache = np.arange(n) * k
        return r

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

    def inference_program(self, chain: list[Any] | None, n: int, rows: int) -> Callable[[Array, Array], None] | None:
        """Small batches as uᵀ = Wᵀhᵀ with contiguous Wᵀ copies (PyTorch's weight layout).

        OpenBLAS is ~12% faster at that product than at u = hW for batches of a few dozen rows.
        Copying Wᵀ costs about one batch, so only for predictions of at least 4 batches, and only
        for chains whose hidden activations are elementwise.
        """
        limit = self.transposed_inference_rows
        if chain is None or limit is None or rows > limit or n < 4 * rows:
            return None
        layers = [a for a in chain if a is not None]
        if not layers or any(builtin_name(a.activation) not in _ELEMENTWISE for a in layers[:-1]):
            return None
        plan = [
            (np.ascontiguousarray(a.kernel.T), None if a.bias is None else a.bias[:, None], a.activation)
            for a in layers
        ]

        def logits(x: Array, out: Array) -> None:
            h = x.reshape(x.shape[0], -1).T
            for i, (wt, bias, act) in enumerate(plan):
                u = wt @ h
                if bias is not None:
                    u += bias
                h = u if i == len(plan) - 1 else self.activation_forward(act, u, in_place=True)
            out[...] = h.T

        return logits

    def _scratch(self, like: Array) -> Array:
        buf = getattr(self, "_scratch_buf", None)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = np.empty_like(like)
            self._scratch_buf = buf
        return buf


_ELEMENTWISE = ("linear", "relu", "elu", "sigmoid", "tanh")
