"""The array-module abstraction every layer, loss, metric and optimizer computes through.

`Ops` holds one array namespace (`xp`) and the device it lives on. Its methods are written
against the Python array API standard, so they run unchanged on NumPy, CuPy and the strict
stand-in used in CI. Backends override only the hot spots (in-place NumPy updates, fused
CuPy kernels); each override is tested against the plain method here.

Activations and losses choose their variant by calling the method named after their math
(`ReLU.apply` calls `ops.relu`, `SparseCategoricalCrossentropy.fused` calls
`ops.sparse_softmax_crossentropy`), in the way Thinc's `CupyOps` overrides `Ops.relu`; no backend
looks at an activation's or a loss's name. The methods of `Ops` itself stay the plain formulas, so
`Ops.activation_forward(ops, …)` is always the reference a backend's variant is tested against.
Beside it: image_ops.py (convolution and pooling, which `Ops` extends), values.py (weight writes,
host dtypes), hashing.py (the hash of dropout masks).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from .hashing import hash_u32, step_keys
from .hashing import mix_int as mix_int  # the helpers' old home: their import paths keep working
from .image_ops import ImageOps
from .values import builtin_name as builtin_name
from .values import host_dtype

Array = Any


class Ops(ImageOps):
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

    def carries_nan(self, act: Any) -> bool:
        """Whether a NaN input row stays NaN through this backend's dense layer with activation `act`.

        Probed once per activation on the backend's own kernels (a kernel that maps NaN to 0 would drop it,
        NumPy's maximum keeps it; a reference BLAS skips zero terms), so a shortcut that relies on
        it holds on every backend or is not taken.
        """
        cache: dict[type, bool] = self.__dict__.setdefault("_carries_nan", {})
        if not getattr(act, "builtin", False):
            return False
        key = type(act)
        if key not in cache:
            x = np.zeros((4, 8), np.float32)
            x[0, 0] = np.nan
            w, b = np.full((8, 8), 0.5, np.float32), np.zeros(8, np.float32)
            xs, ws, bs = self.asarray(x), self.asarray(w), self.asarray(b)
            _, h1 = self.dense_forward(xs, ws, bs, act, keep_u=False)
            h2 = self.activation_forward(act, self.affine(xs, ws, bs), in_place=True)
            zeros = self.asarray(np.zeros((8, 8), np.float32))
            h3 = self.activation_forward(act, xs @ zeros, in_place=True)
            rows = [self.to_numpy(h)[0] for h in (h1, h2, h3)]
            cache[key] = bool(all(np.isnan(r).all() for r in rows))
        return cache[key]

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
        u = self.matmul(x, w)
        return u if b is None else u + b

    def take_rows(self, a: Array, idx: Array, out: Array | None = None) -> Array:
        """a[idx] along the first axis; into `out` (a fixed batch buffer) when given."""
        rows = self.xp.take(a, idx, axis=0)
        if out is None:
            return rows
        out[...] = rows
        return out

    def take_rows_into(self, sources: list[Array], idx: Array, outs: list[Array]) -> None:
        """outs[j][...] = sources[j][idx] along the first axis for each j (a batch's fixed buffers)."""
        for a, out in zip(sources, outs, strict=True):
            self.take_rows(a, idx, out=out)

    def cast(self, x: Array, dtype: Any) -> Array:
        """A 0-d device value in `dtype` (per-step scalars are computed in float64, used in the model's dtype)."""
        return self.xp.astype(x, getattr(self.xp, dtype) if isinstance(dtype, str) else dtype)

    def subtract_(self, p: Array, g: Array) -> None:
        """p ← p − g in place (plain SGD on gradients that already carry the learning rate)."""
        p -= g

    def assign(self, dst: Array, src: Array) -> None:
        """dst[...] = src: a write into lasting memory as a backend call, which a recorded step replays."""
        dst[...] = src

    def subtract_counting(self, p: Array, g: Array, t: Array) -> None:
        """`subtract_(p, g)` and the optimizer's device step count t (0-d float64) ← t + 1: one kernel on CuPy."""
        self.subtract_(p, g)
        t += 1

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

    # The variants activations ask for by name of their math (`Activation.apply`, `.backprop`,
    # `.apply_biased`); here the activation's own formula, overridden where a backend has a faster form.
    def relu(self, act: Any, u: Array, in_place: bool = False) -> Array:
        """max(u, 0) for the relu activation `act`; in_place=True lets a backend write it into u."""
        return act.forward(self.xp, u)

    def backprop_relu(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        """dh · [u > 0] for h = relu(u); a backend may write the result into dh."""
        return act.backward(self.xp, u, h, dh)

    def softmax(self, act: Any, u: Array, in_place: bool = False) -> Array:
        """softmax(u) over the last axis for the softmax activation `act`; in_place as `relu`."""
        return act.forward(self.xp, u)

    def bias_activation(self, act: Any, u: Array, b: Array | None) -> Array:
        """h = act(u + b) for u: (n, units), b: (units,) or None; u is updated to u + b in place."""
        if b is not None:
            u += b
        return act.forward(self.xp, u)

    def bias_softmax(self, act: Any, u: Array, b: Array | None) -> Array:
        """`bias_activation` for the softmax activation `act`."""
        return self.bias_activation(act, u, b)

    def activation_backward_sum(self, act: Any, u: Array, h: Array, dh: Array, out: Array, mode: str) -> Array:
        """∂L/∂u = act'(u)·dh: (n, units), and its column sums into out (units,).

        mode "set": out = Σ_i ∂L/∂u[i, :] (`bias_grad`); "sub": out −= that sum (`bias_sub`, SGD on a bias).
        """
        du = self.activation_backward(act, u, h, dh)
        if mode == "set":
            self.bias_grad(du, out)
        else:
            self.bias_sub(du, out)
        return du

    def bias_grad(self, du: Array, out: Array) -> None:
        """out[j] = Σ_i du[i, j]."""
        out[...] = self.xp.sum(du, axis=0)

    def runs_in_one_call(self, method: str) -> bool:
        """Whether this backend's `method` runs as one library call where the code here composes several
        passes ("gemm_sub": c − aᵀb as one GEMM with β = 1). Routes that pay only then ask (the plan)."""
        return False

    # Whether every array operation is a kernel launch worth saving (CuPy): then Adam and Dropout move
    # their device counts inside their kernels (`adam_counting`, `dropout_counting`) and the step's loss
    # sum and accuracy count come from one (`metric_kernels.loss_and_hits`). The NumPy step keeps the
    # plain adds, which its recorded replay (training/program.py) advances itself.
    fuses_launches = False

    def gemm_sub(self, a: Array, b: Array, c: Array) -> None:
        """c ← c − aᵀb in place: a (k, m), b (k, n), c (m, n), c overlapping neither."""
        c -= self.matmul(a.T, b)

    def bias_sub(self, du: Array, b: Array) -> None:
        """b ← b − Σ_i du[i, :] in place."""
        b -= self.xp.sum(du, axis=0)

    def dropout_keys(self, base: int, step: Array) -> tuple[Any, Any]:
        """The two 32-bit hash keys of dropout call `step` (a 0-d uint32 device counter) for a layer key `base`.

        Computed on the device from the counter, so a recorded step draws a new mask each replay.
        """
        return step_keys(self.xp, base, step)

    def dropout_forward(self, x: Array, keys: tuple[Any, Any], rate: float, offset: Any = 0) -> tuple[Array, Array]:
        """-> (x * mask, mask) for the hash mask of `keys`."""
        mask = self.dropout_mask(tuple(x.shape), keys, rate, x.dtype, offset)
        return x * mask, mask

    def dropout_step(self, x: Array, base: int, step: Array, rate: float, offset: Any = 0) -> tuple[Array, Array]:
        """-> (x * mask, mask) for layer key `base` at call `step` (a 0-d uint32 device counter).

        `dropout_forward` with `dropout_keys(base, step)`; CuPy derives the keys inside the mask kernel.
        """
        return self.dropout_forward(x, self.dropout_keys(base, step), rate, offset)

    def dropout_counting(self, x: Array, base: int, step: Array, rate: float, offset: Any = 0) -> tuple[Array, Array]:
        """`dropout_step` at call `step`, then step ← step + 1 (CuPy: one launch for both)."""
        out = self.dropout_step(x, base, step, rate, offset)
        step += 1
        return out

    def fused_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: float) -> tuple[Array, Array, Array]:
        """A loss fused with its output activation, from the pre-activation u: (n, k).

        -> (per-sample loss (n,), scale · ∂ℓ/∂u (n, k), the model output act(u) (n, k)).
        """
        return self.preactivation_loss(loss, act, y, u, scale)

    def loss_adds_bias(self, loss: Any, act: Any) -> bool:
        """Whether `fused_loss_with_bias` saves launches here for this loss and output activation (the plan then
        has the output layer stop at xW and the loss add its bias)."""
        return False

    def fused_loss_with_bias(
        self,
        loss: Any,
        act: Any,
        y: Array,
        u: Array,
        bias: Array,
        scale: Any,
        db: Any = None,
        sums: Any = None,
        mode: str = "set",
        running: Any = None,
        counter: Any = None,
    ) -> tuple[Array, Array, Array]:
        """`fused_loss` of u + bias: u (n, k) = xW is overwritten with the logits u + bias (k,); where db (k,) is
        given, ∂L/∂bias = Σ_rows of the returned gradient is written there (mode "set") or subtracted from it
        (mode "sub": db is the bias itself, plain SGD's update, the gradient carrying η). sums: None or a list,
        to which a backend that has the batch's [Σ loss, sparse accuracy count] (0-d, u's dtype) from the same
        launch appends them, or with running (the fit's [Σ loss, count] so far, 0-d arrays of u's dtype) the
        running sums plus them; here nothing is appended (the caller sums and adds apart). counter: None or the
        optimizer's device step count t (0-d float64), moved to t + 1 here (CuPy: by the loss kernel itself)."""
        if mode not in ("set", "sub"):
            raise ValueError(f"fused_loss_with_bias: mode must be 'set' or 'sub', got {mode!r}")
        self.assign(u, self.xp.add(u, bias))
        value, grad, out = self.fused_loss(loss, act, y, u, scale)
        if db is not None and mode == "sub":
            g = self.xp.empty_like(db)  # the sum, then the subtraction: what the sink's `put` does with it
            self.bias_grad(grad, g)
            self.subtract_(db, g)
        elif db is not None:
            self.bias_grad(grad, db)
        if counter is not None:
            counter += 1
        return value, grad, out

    def preactivation_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        """`fused_loss` by the loss's own formula (`call_and_grad_from_preactivation`)."""
        value, grad = loss.call_and_grad_from_preactivation(self.xp, y, u)
        return value, grad * scale, act.forward(self.xp, u)

    # The variants losses ask for by name of their math (`Loss.fused`); here the loss's own formula.
    def softmax_crossentropy(self, loss: Any, act: Any, y: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        """`fused_loss` of softmax + categorical cross-entropy, y: (n, k) one-hot or soft targets."""
        return self.preactivation_loss(loss, act, y, u, scale)

    def sparse_softmax_crossentropy(
        self, loss: Any, act: Any, y: Array, u: Array, scale: Any
    ) -> tuple[Array, Array, Array]:
        """`fused_loss` of softmax + sparse categorical cross-entropy, y: (n,) int class indices."""
        return self.preactivation_loss(loss, act, y, u, scale)

    def allreduce_sum(self, comm: Any, buf: Array) -> None:
        """Sum a device buffer over the ranks of an mpi4py communicator, in place (staged through the host)."""
        from mpi4py import MPI

        host = np.ascontiguousarray(self.to_numpy(buf))
        comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        buf[...] = self.asarray(host)

    def dropout_mask(
        self, shape: tuple[int, ...], keys: tuple[Any, Any], rate: float, dtype: Any, offset: Any = 0
    ) -> Array:
        """Inverted-dropout mask (0 or 1/(1-rate)) from a counter-based hash of each element's index.

        The hash uses only uint32 xor/shift/multiply, which are exact on every backend, so the
        same (seed, layer, step) gives the same mask bit for bit on NumPy and on CuPy. `offset`
        shifts the element counter (a rank's first row in the global batch × row width).
        """
        xp = self.xp
        n = int(np.prod(shape))
        counters = self.arange_u32(n)
        h = hash_u32(xp, counters + offset, keys)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        keep = xp.astype(h >= threshold, dtype)
        return xp.reshape(keep * (1.0 / (1.0 - rate)), shape)

    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: Any, momentum: float, nesterov: bool) -> None:
        """SGD (with momentum when m is given); lr: a 0-d device value in p's dtype."""
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
        self, p: Array, g: Array, v: Array, m: Array | None, lr: Any, rho: float, momentum: float, eps: float
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

    def adam_step(
        self, p: Array, g: Array, m: Array, v: Array, lr: Array, t: Array, beta_1: float, beta_2: float, eps: float
    ) -> None:
        """Adam's update at step t: lr and t are 0-d float64 device values (t already counts this update).

        The bias correction lr·√(1−β₂ᵗ)/(1−β₁ᵗ) in float64, as Python would compute it, then in p's
        dtype; CuPy computes it inside the update kernel.
        """
        xp = self.xp
        lr_t = self.cast(lr * xp.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t), p.dtype)
        self.adam_update(p, g, m, v, lr_t, beta_1, beta_2, eps)

    def adam_counting(
        self, p: Array, g: Array, m: Array, v: Array, lr: Array, t: Array, beta_1: float, beta_2: float, eps: float
    ) -> None:
        """t ← t + 1, then `adam_step` at the new t (CuPy: one launch for both)."""
        t += 1
        self.adam_step(p, g, m, v, lr, t, beta_1, beta_2, eps)

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: Any, beta_1: float, beta_2: float, eps: float
    ) -> None:
        """lr_t (a 0-d device value in p's dtype) already carries the bias correction lr·√(1−β₂ᵗ)/(1−β₁ᵗ)."""
        xp = self.xp
        m += (1.0 - beta_1) * (g - m)
        v += (1.0 - beta_2) * (g * g - v)
        p -= lr_t * m / (xp.sqrt(v) + eps)


class DeviceScalar:
    """A per-step number held in device memory (a 0-d array) beside its host value.

    The step reads the array, never a Python number, so a step recorded once (a CUDA graph)
    sees new values on replay. `set` writes the device only when the value changes (a new
    learning rate, the shorter last batch), never once per step.
    """

    def __init__(self, ops: Ops, value: float, dtype: Any) -> None:
        self.value = value
        self.array = ops.asarray(np.asarray(value, dtype=host_dtype(dtype)))

    def set(self, value: float) -> Array:
        if value != self.value:
            self.array[...] = value
            self.value = value
        return self.array

    def __repr__(self) -> str:
        return f"DeviceScalar({self.value!r})"
