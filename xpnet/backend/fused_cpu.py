"""NumPy operations of a training step bound once to buffers: the calls a replayed step makes.

A step recorded on NumPy (training/program.py) knows every array its operations read and write.
`bind` turns one recorded call into a function of no arguments that does the same arithmetic
into the recorded result's memory, with any intermediate in scratch made here, once: the same
ufuncs in the same order as the `NumpyOps` method it stands for, so the result is bit-identical
and a replayed step allocates nothing. A call it does not know gets None, and the program
re-runs that call as it is and copies its result into the recorded buffer.

Each binder checks that the backend still runs the method it mirrors (`NumpyOps`'s own, not an
override) and that the recorded arrays have the layout it assumes; the program then checks a
whole replayed step against an eager one before it trusts the list.

A call that is one C function (a ufunc, a BLAS routine through ctypes) is bound as a
`functools.partial` of it, and one that is several such calls as their `Steps`: the replayed list
runs those partials one after another, so no Python frame of a wrapper runs per call. Their
arguments are positional where the function takes them so (`out` of a ufunc, `axis`/`dtype`/`out`
of a reduction): a partial with keywords builds a dict at each call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ..activations import Linear, ReLU, Softmax
from ..losses import SparseCategoricalCrossentropy
from .base import mix_int
from .hashing import dropout_constants
from .numpy_ops import NumpyOps

Bound = Callable[[], object]  # what it returns is not used


class Steps(tuple[Bound, ...]):
    """One recorded call bound as several calls in order, each a C function with its arguments (a
    `functools.partial` of a ufunc or an array method): the replayed list takes them in one by one
    (training/replay.py); calling it runs them here."""

    def __call__(self) -> None:
        for f in self:
            f()


def _steps(*bound: Bound) -> Steps:
    """The calls of `bound` in order, each `Steps` opened into its own calls."""
    return Steps(g for f in bound for g in (f if isinstance(f, Steps) else (f,)))


def mirrors(ops: Any, name: str) -> bool:
    """Whether `ops.name` is NumpyOps's own method (a subclass or another backend may compute differently)."""
    return isinstance(ops, NumpyOps) and getattr(type(ops), name, None) is getattr(NumpyOps, name)


def _arrays(*a: Any) -> bool:
    return all(isinstance(v, np.ndarray) for v in a)


def _dense(ops: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, u: np.ndarray) -> Bound:
    """u = x @ w (+ b) by the backend's BLAS: x (n, i), w (i, k), b (k,) or None, u (n, k), one dtype."""
    gemm = ops.cblas.bound_matmul(x, w, u)
    return gemm if b is None else Steps((gemm, partial(np.add, u, b, u)))


def _activate(act: Any, u: np.ndarray, h: np.ndarray) -> Bound | None:
    """h = act(u) as `NumpyOps.activation_forward` computes it (relu, linear, row softmax)."""
    kind = type(act)  # exact types: a subclass may compute differently
    if kind is Linear:
        return Steps() if h is u else None
    if kind is ReLU:
        return partial(np.maximum, u, 0.0, dtype=u.dtype, out=h)
    if kind is Softmax and u.ndim == 2 and h is not u:
        col = np.empty((u.shape[0], 1), dtype=u.dtype)  # each row's max, then its sum
        return Steps(
            (
                partial(np.maximum.reduce, u, 1, None, col, True),  # axis 1, keepdims
                partial(np.subtract, u, col, h),
                partial(np.exp, h, h),
                partial(np.add.reduce, h, 1, None, col, True),
                partial(np.divide, h, col, h),
            )
        )
    return None


def bind_dense_forward(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`dense_forward(x, w, b, act, keep_u)` -> (u, h), into the recorded u and h (for inference,
    keep_u=False, the same memory where the activation works in place)."""
    if kwargs or len(args) not in (4, 5) or not mirrors(ops, "dense_forward") or not mirrors(ops, "activation_forward"):
        return None
    x, w, b, act, keep_u = (*args, True) if len(args) == 4 else args  # keep_u defaults to True
    u, h = result
    if not isinstance(keep_u, bool) or not _arrays(x, w, u, h) or (b is not None and not _arrays(b)):
        return None
    first, second = _dense(ops, x, w, b, u), _activate(act, u, h)
    if second is None:
        return None
    return _steps(first, second)


def bind_affine(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`affine(x, w, b)` -> u, into the recorded u."""
    if kwargs or len(args) != 3 or not mirrors(ops, "affine"):
        return None
    x, w, b = args
    if not _arrays(x, w, result) or (b is not None and not _arrays(b)):
        return None
    return _dense(ops, x, w, b, result)


def bind_fused_loss(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`fused_loss(loss, softmax, y, u, scale)` for sparse cross-entropy -> (ℓ (n,), scale·(p − y) (n, k), p (n, k)).

    softmax, the per-row loss log Σexp(u − m) + m − u[y] and its gradient in one list of passes
    over fixed scratch (m, Σ, the labels' flat indices).
    """
    if kwargs or len(args) != 5 or not mirrors(ops, "fused_loss"):
        return None
    loss, act, y, u, scale = args
    value, grad, p = result
    if (
        type(loss) is not SparseCategoricalCrossentropy
        or type(act) is not Softmax
        or not _arrays(y, u, value, grad, p)
        or u.ndim != 2
        or not u.flags.c_contiguous
        or not grad.flags.c_contiguous
        or not isinstance(scale, np.ndarray)
    ):
        return None
    n, k = u.shape
    starts = np.arange(n) * k
    idx = np.empty(n, dtype=np.result_type(starts, y))
    m = np.empty(n, dtype=u.dtype)
    s = np.empty(n, dtype=u.dtype)
    picked = np.empty(n, dtype=u.dtype)
    mcol, scol = m[:, None], s[:, None]
    uflat, gflat = u.reshape(-1), grad.reshape(-1)
    add, subtract = np.add, np.subtract
    return Steps(
        (
            partial(add, starts, y, idx),
            partial(np.maximum.reduce, u, 1, None, m),
            partial(subtract, u, mcol, p),
            partial(np.exp, p, p),
            partial(np.add.reduce, p, 1, None, s),
            partial(np.divide, p, scol, p),
            partial(np.log, s, value),
            partial(add, value, m, value),
            # the arrays' own take and put (what np.take and np.put call); labels are in range (checked when
            # the data came in), so "clip" clips nothing
            partial(uflat.take, idx, None, picked, "clip"),
            partial(subtract, value, picked, value),
            partial(np.multiply, p, scale, grad),
            partial(gflat.take, idx, None, picked, "clip"),
            partial(subtract, picked, scale, picked),
            partial(gflat.put, idx, picked, "clip"),
        )
    )


def bind_bias_sub(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`bias_sub(du, b)`: b −= Σ_i du[i, :], the column sums in scratch."""
    if kwargs or len(args) != 2 or not mirrors(ops, "bias_sub") or not _arrays(*args):
        return None
    du, b = args
    return _bias(du, b, "sub")


def bind_bias_grad(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`bias_grad(du, out)`: out = Σ_i du[i, :] into the bias's gradient."""
    if kwargs or len(args) != 2 or not mirrors(ops, "bias_grad") or not _arrays(*args):
        return None
    du, out = args
    return _bias(du, out, "set")


def _bias(du: np.ndarray, b: np.ndarray, mode: str) -> Bound:
    if mode == "set":
        return partial(np.add.reduce, du, 0, None, b)
    sums = np.empty(b.shape, dtype=np.result_type(du.dtype))
    return Steps((partial(np.add.reduce, du, 0, None, sums), partial(np.subtract, b, sums, b)))


def bind_activation_backward_sum(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`activation_backward_sum(relu, u, h, dh, out, mode)`: dh ·= (h > 0) in place, then its column sums."""
    if kwargs or len(args) != 6:
        return None
    act, _, h, dh, out, mode = args
    names = ("activation_backward_sum", "activation_backward", "bias_grad", "bias_sub")
    if not all(mirrors(ops, n) for n in names) or type(act) is not ReLU or mode not in ("set", "sub"):
        return None
    if not _arrays(h, dh, out) or result is not dh or not dh.flags.writeable:
        return None
    positive = np.empty(h.shape, dtype=bool)
    return _steps(partial(np.greater, h, 0.0, positive), partial(np.multiply, dh, positive, dh), _bias(dh, out, mode))


_VIEWS = (np.reshape, np.transpose, np.expand_dims, np.squeeze, np.swapaxes, np.moveaxis)


def bind_xp(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """A NumPy function of the step (`np.multiply`, `np.sum`, ...) with `out=` its recorded result."""
    if not isinstance(result, np.ndarray) or "out" in kwargs:
        return None
    if f in _VIEWS and args and isinstance(args[0], np.ndarray):
        return _view(f, args, kwargs, result)
    if (isinstance(f, np.ufunc) and f.nout == 1) or f in _REDUCTIONS:
        return _direct(f, args, kwargs, result) or partial(f, *args, out=result, **kwargs)
    if f is np.count_nonzero:
        return _count(args, kwargs, result)
    if f is getattr(np, "astype", None) and len(args) == 2 and not kwargs:
        return partial(np.copyto, result, args[0], casting="unsafe")
    return None


def _view(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: np.ndarray) -> Bound | None:
    """A view function's call: nothing to do where the result is a view of memory that lasts (it shows each
    replay's values); a reshape that had to copy (a strided input) copies into the recorded result."""
    x = args[0]
    if np.shares_memory(result, x):
        return Steps()
    if f is np.reshape and not kwargs and result.flags.c_contiguous and result.size == x.size:
        return partial(np.copyto, result.reshape(x.shape), x)  # C order on both sides, as reshape reads
    return None


_REDUCTIONS = (np.sum, np.argmax, np.argmin, np.max, np.min)


def _direct(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: np.ndarray) -> Bound | None:
    """np.sum / np.argmax / np.argmin of a plain ndarray bound to what NumPy's wrapper calls on it
    (`np.add.reduce` with sum's axis=None default, the array's own method), a wrapper call less per replay."""
    if not args or type(args[0]) is not np.ndarray:
        return None
    if f is np.sum:
        axis = args[1] if len(args) > 1 else kwargs.pop("axis", None)
        return partial(np.add.reduce, args[0], axis, *args[2:], out=result, **kwargs)
    if f is np.argmax or f is np.argmin:
        return partial(getattr(args[0], f.__name__), *args[1:], out=result, **kwargs)
    return None


def _count(args: tuple[Any, ...], kwargs: dict[str, Any], result: np.ndarray) -> Bound | None:
    """`np.count_nonzero(mask)` of a boolean mask: the count of True is the integer sum of the booleans,
    exact, into the recorded 0-d buffer."""
    if kwargs or len(args) != 1 or getattr(args[0], "dtype", None) != np.dtype(bool):
        return None
    return partial(np.add.reduce, args[0], axis=None, dtype=result.dtype, out=result)


def bind_matmul(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`matmul(a, b, out=None)` -> a @ b, into the recorded result (the given `out`, or the step's temporary)."""
    out = kwargs.get("out", args[2] if len(args) > 2 else None)
    if len(args) < 2 or set(kwargs) - {"out"} or not mirrors(ops, "matmul") or not isinstance(result, np.ndarray):
        return None
    if out is not None and out is not result:
        return None
    return ops.cblas.bound_matmul(args[0], args[1], result)


def bind_dropout_step(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`dropout_step(x, base, counter, rate, offset)` -> (x · mask, mask): the counter-hash mask of
    `NumpyOps.dropout_mask` in uint32 scratch, the keys from the counter's value at each replay."""
    names = ("dropout_step", "dropout_forward", "dropout_keys", "dropout_mask")
    if kwargs or len(args) != 5 or not all(mirrors(ops, n) for n in names):
        return None
    x, base, counter, rate, offset = args
    y, mask = result
    if not _arrays(x, counter, y, mask) or not isinstance(base, int) or not isinstance(rate, float):
        return None
    if mask.shape != x.shape or not mask.flags.c_contiguous or not 0.0 < rate < 1.0:
        return None
    n, flat = mask.size, mask.reshape(-1)
    _, _, cut, scale = dropout_constants((0, 0), rate, mask.dtype)
    kernels = getattr(ops, "kernels", None)
    one_dtype = x.dtype == mask.dtype == y.dtype and x.dtype in (np.float32, np.float64)
    if kernels is not None and one_dtype and x.flags.c_contiguous and y.flags.c_contiguous:
        one, xs, ys = kernels.dropout_apply, x.reshape(-1), y.reshape(-1)

        def apply() -> None:
            k0 = mix_int(base ^ mix_int(int(counter) ^ 0x85EBCA6B))
            one(xs, (k0 + int(offset)) & 0xFFFFFFFF, mix_int(k0 + 0x632BE5AB), cut, scale, flat, ys)

        return apply
    ramp = ops.arange_u32(n)
    h, t = np.empty(n, dtype=np.uint32), np.empty(n, dtype=np.uint32)
    keep, threshold = np.empty(n, dtype=bool), np.uint32(cut)
    add, xor, shift, mul, ge = np.add, np.bitwise_xor, np.right_shift, np.multiply, np.greater_equal
    mults = tuple(np.uint32(m) for m in (0x7FEB352D, 0x846CA68B))

    def run() -> None:
        k0 = mix_int(base ^ mix_int(int(counter) ^ 0x85EBCA6B))
        k1 = mix_int(k0 + 0x632BE5AB)
        add(ramp, np.uint32((k0 + int(offset)) & 0xFFFFFFFF), out=h)
        xor(h, np.uint32(k1), out=h)
        for s, m in ((16, mults[0]), (15, mults[1])):
            shift(h, s, out=t)
            xor(h, t, out=h)
            mul(h, m, out=h)
        shift(h, 16, out=t)
        xor(h, t, out=h)
        ge(h, threshold, out=keep)
        mul(keep, scale, out=flat)  # True · scale = scale, False · scale = +0: a masked copyto's bits, 20× faster
        mul(x, mask, out=y)

    return run


def adam_pass(kernels: Any) -> Callable[..., None]:
    """`adam_update(p, g, m, v, lr_t, c1, c2, eps, scratch)` over flat buffers, in place: numba's one
    pass where `kernels` has it, else NumPy's passes of `NumpyOps.adam_update` through `scratch`.

    p, g, m, v, scratch: (n,) of one float dtype; lr_t: 0-d of that dtype; c1 = 1 − β₁, c2 = 1 − β₂
    and eps: NumPy scalars of that dtype. The same roundings either way (tests compare them).
    """
    if kernels is not None:
        one = kernels.adam_update
        return lambda p, g, m, v, lr_t, c1, c2, eps, scratch: one(p, g, m, v, lr_t[()], c1, c2, eps)
    subtract, multiply, add, sqrt, divide = np.subtract, np.multiply, np.add, np.sqrt, np.divide

    def passes(p: Any, g: Any, m: Any, v: Any, lr_t: Any, c1: Any, c2: Any, eps: Any, t: Any) -> None:
        subtract(g, m, out=t)
        multiply(t, c1, out=t)
        add(m, t, out=m)
        multiply(g, g, out=t)
        subtract(t, v, out=t)
        multiply(t, c2, out=t)
        add(v, t, out=v)
        sqrt(v, out=t)
        add(t, eps, out=t)
        divide(m, t, out=t)
        multiply(t, lr_t, out=t)
        subtract(p, t, out=p)

    return passes


def bind_adam_step(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`adam_step(p, g, m, v, lr, t, β₁, β₂, ε)`: the bias correction lr·√(1−β₂ᵗ)/(1−β₁ᵗ) in float64 0-d
    scratch (as `Ops.adam_step` computes it), then one pass over the flat buffers (`adam_pass`)."""
    if kwargs or len(args) != 9 or not mirrors(ops, "adam_step") or not mirrors(ops, "adam_update"):
        return None
    p, g, m, v, lr, t, beta_1, beta_2, eps = args
    if not _arrays(p, g, m, v, lr, t) or lr.shape != () or t.shape != () or lr.dtype != np.float64:
        return None
    if not all(isinstance(b, float) for b in (beta_1, beta_2, eps)) or t.dtype != np.float64:
        return None
    if p.ndim != 1 or not all(a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, m, v)):
        return None
    dt = p.dtype.type
    kernels = getattr(ops, "kernels", None) if p.dtype in (np.float32, np.float64) else None
    update = adam_pass(kernels)
    c1, c2, e = dt(1.0 - beta_1), dt(1.0 - beta_2), dt(eps)
    num, den, lr_t = np.empty((), np.float64), np.empty((), np.float64), np.empty((), p.dtype)
    scratch = np.empty_like(p) if kernels is None else None
    power, subtract, sqrt, multiply, divide, copyto = np.power, np.subtract, np.sqrt, np.multiply, np.divide, np.copyto

    def run() -> None:
        power(beta_2, t, out=num)
        subtract(1.0, num, out=num)
        sqrt(num, out=num)
        multiply(lr, num, out=num)
        power(beta_1, t, out=den)
        subtract(1.0, den, out=den)
        divide(num, den, out=num)
        copyto(lr_t, num, casting="unsafe")
        update(p, g, m, v, lr_t, c1, c2, e, scratch)

    return run


def bind_gemm_sub(ops: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Bound | None:
    """`gemm_sub(a, b, c)`: c −= aᵀb by the backend's BLAS on the arrays' fixed addresses (what NumpyOps calls)."""
    if kwargs or len(args) != 3 or not mirrors(ops, "gemm_sub") or not _arrays(*args):
        return None
    return ops.cblas.bound_gemm_sub(*args)


BINDERS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any], Any], Bound | None]] = {
    "dense_forward": bind_dense_forward,
    "affine": bind_affine,
    "matmul": bind_matmul,
    "gemm_sub": bind_gemm_sub,
    "dropout_step": bind_dropout_step,
    "adam_step": bind_adam_step,
    "fused_loss": bind_fused_loss,
    "bias_sub": bind_bias_sub,
    "bias_grad": bind_bias_grad,
    "activation_backward_sum": bind_activation_backward_sum,
}
