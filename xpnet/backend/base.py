"""The array-module abstraction every layer, loss, metric and optimizer computes through.

`Ops` holds one array namespace (`xp`) and the device it lives on. Its methods are written
against the Python array API standard, so they run unchanged on NumPy, CuPy and the strict
stand-in used in CI. Backends override only the hot spots (in-place NumPy updates, fused
CuPy kernels); each override is tested against the plain method here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

Array = Any


class Ops:
    """Generic array-API implementation; subclasses set `name`, `xp` and `device`."""

    name = "generic"
    xp: Any = None
    device: Any = None

    def __init__(self) -> None:
        self.syncs = 0  # device -> host reads, so tests can hold the training loop to a budget
        self._arange_cache: dict[int, Array] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    def describe(self) -> str:
        return self.name

    def info(self) -> dict[str, str]:
        """What this backend runs on, for logs and result files."""
        return {"backend": self.describe(), "array_module": f"{getattr(self.xp, '__name__', '?')}"}

    # --- crossing the host/device edge: the only two places data moves ---
    def asarray(self, a: Any, dtype: Any = None) -> Array:
        """Upload a host array (or Python scalars) to this backend's device."""
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def to_numpy(self, a: Array) -> np.ndarray:
        """Download to a host NumPy array; every call counts as one sync."""
        self.syncs += 1
        return self._to_numpy(a)

    def _to_numpy(self, a: Array) -> np.ndarray:
        return np.asarray(a)

    def is_native(self, a: Any) -> bool:
        """True when `a` is already an array of this backend (no upload needed)."""
        return isinstance(a, np.ndarray)

    # predict() computes batches larger than this in blocks of this many rows (None: as given)
    inference_rows: int | None = None
    # predict() batches of at most this many rows run as uᵀ = Wᵀhᵀ (None: never); see Sequential._transposed_plan
    transposed_inference_rows: int | None = None

    max_resident_bytes: int | None = None  # None: no limit; set it to force streaming (tests, shared GPUs)

    def fits_on_device(self, nbytes: int) -> bool:
        """Whether a dataset of `nbytes` should be uploaded whole rather than streamed batch by batch."""
        return self.max_resident_bytes is None or nbytes <= self.max_resident_bytes

    def activate(self) -> AbstractContextManager[Any]:
        """Context that makes this backend's device current (a no-op off CUDA)."""
        return nullcontext()

    def synchronize(self) -> None:
        """Wait for queued device work (for timing only)."""

    # --- creation ---
    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array:
        return self.xp.zeros(shape, dtype=dtype, device=self.device)

    def arange_u32(self, n: int) -> Array:
        a = self._arange_cache.get(n)
        if a is None:
            a = self.xp.arange(n, dtype=self.xp.uint32, device=self.device)
            self._arange_cache[n] = a
        return a

    def matmul_keeps_nan(self) -> bool:
        """Whether NaN·0 stays NaN in this backend's matrix products (reference BLAS skips zero terms)."""
        cached = self.__dict__.get("_keeps_nan")
        if cached is None:
            a = np.zeros((64, 64), np.float32)
            a[0, 0] = np.nan
            nan_left, zeros = self.asarray(a), self.asarray(np.zeros_like(a))
            rows, cols = self.to_numpy(nan_left @ zeros), self.to_numpy(zeros @ nan_left)
            cached = self._keeps_nan = bool(np.isnan(rows[0]).all() and np.isnan(cols[:, 0]).all())
        return bool(cached)

    # --- hot spots ---
    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        r = a @ b
        if out is None:
            return r
        out[...] = r
        return out

    def affine(self, x: Array, w: Array, b: Array | None) -> Array:
        """x: (n, in) @ w: (in, out) + b: (out,) -> (n, out)."""
        u = x @ w
        return u if b is None else u + b

    def take_rows(self, a: Array, idx: Array) -> Array:
        return self.xp.take(a, idx, axis=0)

    def dense_forward(self, x: Array, w: Array, b: Array | None, act: Any, keep_u: bool = True) -> tuple[Array, Array]:
        """-> (u, h) with u = x w + b: (n, units) and h = act(u). Backends fuse bias + activation.

        keep_u=False (inference) lets a backend compute h in u's memory; u is then not meaningful.
        """
        u = self.affine(x, w, b)
        return u, act.forward(self.xp, u)

    def activation_forward(self, act: Any, u: Array, in_place: bool = False) -> Array:
        """act(u); in_place=True lets a backend write the result into u's memory."""
        return act.forward(self.xp, u)

    def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        """∂L/∂u from ∂L/∂h for h = act(u)."""
        return act.backward(self.xp, u, h, dh)

    def bias_grad(self, du: Array, out: Array) -> None:
        """out[j] = Σ_i du[i, j]."""
        out[...] = self.xp.sum(du, axis=0)

    # Whether Dense layers should apply plain SGD inside backprop (`gemm_sub`, `bias_sub`) rather
    # than fill the gradient buffer for a separate update pass: only where that is faster.
    sgd_in_backward = False

    def gemm_sub(self, a: Array, b: Array, c: Array) -> None:
        """c ← c − aᵀb in place: a (k, m), b (k, n), c (m, n), c overlapping neither."""
        c -= self.xp.matmul(a.T, b)

    def bias_sub(self, du: Array, b: Array) -> None:
        """b ← b − Σ_i du[i, :] in place."""
        b -= self.xp.sum(du, axis=0)

    def dropout_forward(self, x: Array, keys: tuple[int, int], rate: float, offset: int = 0) -> tuple[Array, Array]:
        """-> (x * mask, mask) for the hash mask of `keys`."""
        mask = self.dropout_mask(tuple(x.shape), keys, rate, x.dtype, offset)
        return x * mask, mask

    def fused_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: float) -> tuple[Array, Array, Array]:
        """A loss fused with its output activation, from the pre-activation u: (n, k).

        -> (per-sample loss (n,), scale · ∂ℓ/∂u (n, k), the model output act(u) (n, k)).
        """
        value, grad = loss.call_and_grad_from_preactivation(self.xp, y, u)
        return value, grad * scale, act.forward(self.xp, u)

    def allreduce_sum(self, comm: Any, buf: Array) -> None:
        """Sum a device buffer over the ranks of an mpi4py communicator, in place (staged through the host)."""
        from mpi4py import MPI

        host = np.ascontiguousarray(self.to_numpy(buf))
        comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        buf[...] = self.asarray(host)

    def dropout_mask(
        self, shape: tuple[int, ...], keys: tuple[int, int], rate: float, dtype: Any, offset: int = 0
    ) -> Array:
        """Inverted-dropout mask (0 or 1/(1-rate)) from a counter-based hash of each element's index.

        The hash uses only uint32 xor/shift/multiply, which are exact on every backend, so the
        same (seed, layer, step) gives the same mask bit for bit on NumPy and on CuPy. `offset`
        shifts the element counter (a rank's first row in the global batch × row width).
        """
        xp = self.xp
        n = int(np.prod(shape))
        counters = self.arange_u32(n)
        h = hash_u32(xp, counters + offset if offset else counters, keys)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        keep = xp.astype(h >= threshold, dtype)
        return xp.reshape(keep * (1.0 / (1.0 - rate)), shape)

    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: float, momentum: float, nesterov: bool) -> None:
        if m is None:
            p -= lr * g
            return
        m *= momentum
        m -= lr * g
        if nesterov:
            p += momentum * m - lr * g
        else:
            p += m

    def rmsprop_update(
        self, p: Array, g: Array, v: Array, m: Array | None, lr: float, rho: float, momentum: float, eps: float
    ) -> None:
        xp = self.xp
        v *= rho
        v += (1.0 - rho) * (g * g)
        inc = lr * g / xp.sqrt(v + eps)
        if m is None:
            p -= inc
            return
        m *= momentum
        m += inc
        p -= m

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: float, beta_1: float, beta_2: float, eps: float
    ) -> None:
        """lr_t already carries the bias correction lr*sqrt(1-b2^t)/(1-b1^t)."""
        xp = self.xp
        m += (1.0 - beta_1) * (g - m)
        v += (1.0 - beta_2) * (g * g - v)
        p -= lr_t * m / (xp.sqrt(v) + eps)


def _mix32(x: Array) -> Array:
    # "lowbias32" integer finaliser (C. Wellons): good avalanche with three multiplies.
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


def hash_u32(xp: Any, counters: Array, keys: tuple[int, int]) -> Array:
    """One keyed round of the mixer over uint32 counters: mix32((c + k0) ^ k1); keys are Python ints < 2**32.

    One round suffices here: the keys are themselves mixer outputs, and the tests check keep
    rate and independence across steps, layers and neighbouring elements.
    """
    del xp
    return _mix32((counters + keys[0]) ^ keys[1])


def mix_int(x: int) -> int:
    """The same mixer on a Python int (host side, for deriving keys)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def builtin_name(obj: Any) -> str | None:
    """The name of a built-in activation or loss, None for user classes (subclasses included).

    Backends key their fused fast paths on this, so a user's subclass always runs its own code.
    """
    return getattr(obj, "name", None) if type(obj).__module__ in ("xpnet.activations", "xpnet.losses") else None


def arange_like(xp: Any, n: int, dtype: Any, like: Array) -> Array:
    """arange on the device of `like` (CuPy places arrays on the current device instead)."""
    if getattr(xp, "__name__", "") == "cupy":
        return xp.arange(n, dtype=dtype)
    return xp.arange(n, dtype=dtype, device=like.device)
