"""The bound NumPy operations of a replayed step (backend/fused_cpu.py) against the backend's plain methods:
each bound call, run on fresh inputs written into its fixed arrays, gives the same bits."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from xpnet import activations, losses
from xpnet.backend import _jit, fused_cpu
from xpnet.backend.numpy_ops import NumpyOps

DTYPES = [np.float32, np.float64]


def _bound_matches(
    ops: NumpyOps, name: str, make: Callable[[np.random.Generator], tuple[Any, ...]], inputs: list[int]
) -> None:
    """Bind `name` on one draw of arguments, then for a second draw written into the same arrays
    compare the bound call's results with the plain method's on copies."""
    rng = np.random.default_rng(0)
    args = make(rng)
    result = getattr(ops, name)(*args)
    bound = fused_cpu.BINDERS[name](ops, args, {}, result)
    assert bound is not None, name
    fresh = make(rng)
    for k in inputs:
        args[k][...] = fresh[k]
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    want = getattr(ops, name)(*copies)
    bound()
    got = result if isinstance(result, tuple) else (result,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        if isinstance(g, np.ndarray):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    for a, c in zip(args, copies, strict=True):  # what the method writes in place, the bound call writes too
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "softmax", "linear"])
def test_bound_dense_forward_is_the_plain_one(dtype: Any, act: str) -> None:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        x, w = rng.standard_normal((13, 7)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)
        return x, w, rng.standard_normal(5).astype(dtype), activations.get(act), True

    _bound_matches(NumpyOps(), "dense_forward", make, [0, 1, 2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bound_softmax_cross_entropy_and_gradient_is_the_plain_one(dtype: Any) -> None:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        u = (rng.standard_normal((11, 6)) * 4).astype(dtype)
        scale = np.asarray(1 / 11, dtype=dtype)
        loss = losses.get("sparse_categorical_crossentropy")
        return loss, activations.get("softmax"), rng.integers(0, 6, 11).astype(np.int32), u, scale

    _bound_matches(NumpyOps(), "fused_loss", make, [2, 3, 4])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["set", "sub"])
def test_bound_relu_backward_with_column_sums_is_the_plain_one(dtype: Any, mode: str) -> None:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        u = rng.standard_normal((9, 4)).astype(dtype)
        h = np.maximum(u, 0.0)
        return activations.get("relu"), u, h, rng.standard_normal((9, 4)).astype(dtype), np.ones(4, dtype), mode

    _bound_matches(NumpyOps(), "activation_backward_sum", make, [1, 2, 3, 4])


def _needs_numba(jit: bool) -> None:
    if jit and _jit.kernels() is None:
        pytest.skip("numba is not installed")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_bound_dropout_draws_the_plain_mask_with_and_without_numba(dtype: Any, jit: bool) -> None:
    _needs_numba(jit)
    counter = np.asarray(3, dtype=np.uint32)

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        counter[...] += 1  # a new step: a new mask
        return rng.standard_normal((6, 10)).astype(dtype), 12345, counter, 0.3, np.asarray(17, np.uint32)

    _bound_matches(NumpyOps(jit=jit), "dropout_step", make, [0])
    plain = NumpyOps(jit=False)
    args = make(np.random.default_rng(1))
    y, mask = NumpyOps(jit=jit).dropout_step(*args)
    bound = fused_cpu.BINDERS["dropout_step"](NumpyOps(jit=jit), args, {}, (y, mask))
    assert bound is not None
    assert bound.__name__ == ("apply" if jit else "run")  # numba's one pass only where asked for
    bound()
    want_y, want_mask = plain.dropout_step(*args)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(y, want_y)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.95])
@pytest.mark.parametrize("offset", [0, 37, 2**32 - 5])  # the last wraps the counter past 2³²
def test_numba_dropout_pass_is_the_numpy_hash_bit_for_bit(dtype: Any, rate: float, offset: int) -> None:
    _needs_numba(True)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((41, 23)).astype(dtype)
    x.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]  # x · 0 where dropped: NaN, and −0 for negatives
    keys = NumpyOps().dropout_keys(99, np.asarray(5, np.uint32))
    y, mask = NumpyOps(jit=True).dropout_forward(x, keys, rate, offset)
    with np.errstate(invalid="ignore"):  # inf · 0
        want_y, want_mask = NumpyOps(jit=False).dropout_forward(x, keys, rate, offset)
    assert y.dtype == mask.dtype == np.dtype(dtype) and y.shape == mask.shape == x.shape
    np.testing.assert_array_equal(_bits(mask), _bits(want_mask))
    np.testing.assert_array_equal(_bits(y), _bits(want_y))
    kept = np.mean(mask > 0)
    assert abs(kept - (1 - rate)) < 0.1, kept


def test_numba_dropout_leaves_strided_input_to_numpy() -> None:
    _needs_numba(True)
    x = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)[:, ::2]
    y, mask = NumpyOps(jit=True).dropout_forward(x, (3, 4), 0.4)
    want_y, want_mask = NumpyOps(jit=False).dropout_forward(x, (3, 4), 0.4)
    np.testing.assert_array_equal(_bits(y), _bits(want_y))
    np.testing.assert_array_equal(_bits(mask), _bits(want_mask))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_bound_adam_step_is_the_plain_one_with_and_without_numba(dtype: Any, jit: bool) -> None:
    if jit and _jit.kernels() is None:
        pytest.skip("numba is not installed")
    ops = NumpyOps(jit=jit)
    t = np.asarray(4.0)

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        p, g = rng.standard_normal(257).astype(dtype), rng.standard_normal(257).astype(dtype)
        m, v = rng.standard_normal(257).astype(dtype) * 0.1, rng.random(257).astype(dtype) * 0.01
        return p, g, m, v, np.asarray(0.001), t, 0.9, 0.999, 1e-7

    _bound_matches(ops, "adam_step", make, [0, 1, 2, 3])


def test_a_binder_declines_what_it_does_not_mirror() -> None:
    class Other(NumpyOps):
        def affine(self, x: Any, w: Any, b: Any) -> Any:
            return x @ w

    x, w, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones(4, np.float32)
    assert fused_cpu.bind_affine(Other(), (x, w, b), {}, np.empty((2, 4), np.float32)) is None
    assert fused_cpu.bind_affine(NumpyOps(), (x, w, b), {}, np.empty((2, 4), np.float32)) is not None
    tanh = (x, w, b, activations.get("tanh"), True)
    assert fused_cpu.bind_dense_forward(NumpyOps(), tanh, {}, (np.empty((2, 4)), np.empty((2, 4)))) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["bias_grad", "bias_sub"])
def test_bound_bias_gradient_and_update_are_the_plain_ones(dtype: Any, name: str) -> None:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        return rng.standard_normal((33, 7)).astype(dtype), rng.standard_normal(7).astype(dtype)

    _bound_matches(NumpyOps(), name, make, [0, 1])


def test_a_subclass_with_its_own_dropout_mask_gets_it_with_numba_too() -> None:
    """numba's one pass is NumpyOps's own hash: a backend subclass with another `dropout_mask` keeps it in
    the eager step (as the replay's binder declines it), numba installed or not (found by review)."""
    _needs_numba(True)

    class Halves(NumpyOps):
        def dropout_mask(self, shape: Any, keys: Any, rate: float, dtype: Any, offset: Any = 0) -> Any:
            return np.full(shape, 0.5, dtype=dtype)

    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    for jit in (False, True):
        y, mask = Halves(jit=jit).dropout_forward(x, (3, 4), 0.4)
        np.testing.assert_array_equal(mask, np.full_like(x, 0.5))
        np.testing.assert_array_equal(y, x * 0.5)


def _edge(kind: str) -> np.ndarray:
    x = np.random.default_rng(7).standard_normal((6, 8)).astype(np.float32)
    made = {
        "0-d": x[0, 0].copy().reshape(()),
        "empty": x[:0],
        "one row": x[:1],
        "float64": x.astype(np.float64),
        "Fortran": np.asfortranarray(x),
        "strided": x[:, ::2],
        "float16": x.astype(np.float16),
    }
    return made.get(kind, x)


@pytest.mark.parametrize("kind", ["0-d", "empty", "one row", "float64", "Fortran", "strided", "float16"])
@pytest.mark.parametrize("rate", [2.0**-40, 1e-7, 0.5, 1 - 1e-9, 1 - 2.0**-40])
@pytest.mark.parametrize("offset", [2**32 - 1, 2**64 - 3])  # wraps past 2³² (and a counter beyond 64 bits)
def test_numba_dropout_at_the_edges_is_the_numpy_hash_and_runs_where_it_says(
    monkeypatch: pytest.MonkeyPatch, kind: str, rate: float, offset: int
) -> None:
    """Bits equal to the NumPy passes, and numba's pass used exactly for C-contiguous float32/float64 input
    (a test that only compares bits cannot tell which path ran: both give the same)."""
    _needs_numba(True)
    calls: list[int] = []
    one = _jit.kernels().dropout_apply

    def counted(*a: Any) -> None:
        calls.append(a[0].size)
        one(*a)

    monkeypatch.setattr(_jit, "kernels", lambda: SimpleNamespace(dropout_apply=counted))
    x = _edge(kind)
    keys = (2**32 - 1, 12345)
    with np.errstate(over="ignore", invalid="ignore"):  # float16's 1/(1 − rate) near 1 is inf, then inf · 0
        y, mask = NumpyOps(jit=True).dropout_forward(x, keys, rate, offset)
        want_y, want_mask = NumpyOps(jit=False).dropout_forward(x, keys, rate, offset)
    assert len(calls) == (kind not in ("Fortran", "strided", "float16")), kind
    assert y.dtype == want_y.dtype and y.shape == want_y.shape == mask.shape
    for got, want in ((y, want_y), (mask, want_mask)):
        np.testing.assert_array_equal(np.ravel(got).view(np.uint8), np.ravel(want).view(np.uint8))
