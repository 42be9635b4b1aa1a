"""numba's compiled loops for the NumPy backend (`xpnet/backend/_jit.py`) against the NumPy code they replace."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.backend import _jit, numpy_ops
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.layers import Conv2D, Dense, Flatten, MaxPooling2D

pytest.importorskip("numba")


def _lenet_like(ops: NumpyOps) -> xpnet.Sequential:
    model = xpnet.Sequential(
        [
            Conv2D(3, (3, 3), padding="same", activation="relu", input_shape=(12, 12, 1)),
            MaxPooling2D(),
            Conv2D(4, (3, 3), padding="same", activation="relu"),
            MaxPooling2D(),
            Flatten(),
            Dense(6, "relu"),
            Dense(3, "softmax"),
        ],
        seed=4,
    )
    model.compile(xpnet.optimizers.SGD(0.05), "sparse_categorical_crossentropy", ["accuracy"], backend=ops)
    return model


def test_lenet_like_fit_and_predict_are_bit_identical_with_and_without_numba() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 12, 12, 1)).astype(np.float32)
    x[:4, :4, :4] = 0.0  # windows of ties, and windows whose maximum is 0 (relu' = 0)
    y = rng.integers(0, 3, 40)
    models = {jit: _lenet_like(NumpyOps(jit=jit)) for jit in (False, True)}
    assert models[True].ops.kernels is not None and models[False].ops.kernels is None
    hist = {jit: m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False).history for jit, m in models.items()}
    assert hist[True] == hist[False]
    for a, b in zip(models[True].get_weights(), models[False].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(models[True].predict(x, batch_size=16), models[False].predict(x, batch_size=16))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("height", "width", "wp"), [(6, 8, 10), (8, 7, 8), (4, 5, 6)])
def test_wide_pool_kernel_matches_numpy_with_ties_and_nans(
    dtype: type, relu: bool, height: int, width: int, wp: int
) -> None:
    rng = np.random.default_rng(1)
    buf = rng.integers(-2, 3, size=(3, 2, height, wp)).astype(dtype)  # few values: many ties, zero maxima
    buf[0, 0, 0, 1] = np.nan  # NaN wins its window, as np.maximum makes it
    buf[1, 1, 2, 0] = np.nan
    x = buf.reshape(3, -1).reshape(buf.shape)[..., :width].transpose(1, 2, 3, 0)
    assert numpy_ops._wide_base(x) is not None
    plain, jit = NumpyOps(jit=False), NumpyOps(jit=True)
    pads = (0, 0, 0, 0)
    if relu:
        y0, a0 = plain.max_pool_relu_forward(x, (2, 2), (2, 2), pads, "relu")
        y1, a1 = jit.max_pool_relu_forward(x, (2, 2), (2, 2), pads, "relu")
    else:
        y0, a0 = plain.max_pool_forward(x, (2, 2), (2, 2), pads)
        y1, a1 = jit.max_pool_forward(x, (2, 2), (2, 2), pads)
    assert isinstance(a1, numpy_ops._WideHalves) and y1.dtype == dtype
    np.testing.assert_array_equal(y1, y0)
    assert np.isnan(y1).sum() == 2
    np.testing.assert_array_equal(a1.right, a0.right)
    np.testing.assert_array_equal(a1.lower, a0.lower)
    if relu:
        np.testing.assert_array_equal(a1.positive, a0.positive)
    dy = rng.standard_normal(y0.shape).astype(dtype)
    for transposed in (False, True):  # dy as NHWC, and as a channels-first view (the conv's ∂x)
        d = np.ascontiguousarray(dy.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0) if transposed else dy
        if relu:
            dx0 = plain.max_pool_relu_backward(d, a0, x.shape, (2, 2), (2, 2), pads, "relu")
            dx1 = jit.max_pool_relu_backward(d, a1, x.shape, (2, 2), (2, 2), pads, "relu")
        else:
            dx0 = plain.max_pool_backward(d, a0, x.shape, (2, 2), (2, 2), pads)
            dx1 = jit.max_pool_backward(d, a1, x.shape, (2, 2), (2, 2), pads)
        np.testing.assert_array_equal(dx1, dx0)
        wide = numpy_ops._wide_base(dx1)
        assert wide is not None and not wide[..., width:].any()  # the conv below relies on zero extra columns
    y2, none = jit.max_pool_forward(x, (2, 2), (2, 2), pads, need_arg=False)
    assert none is None
    np.testing.assert_array_equal(y2, plain.max_pool_forward(x, (2, 2), (2, 2), pads, need_arg=False)[0])


def test_xpnet_jit_0_turns_the_kernels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_JIT", "0")
    assert NumpyOps().kernels is None and "numba" not in NumpyOps().info()
    monkeypatch.setenv("XPNET_JIT", "1")
    assert NumpyOps().kernels is not None and "numba" in NumpyOps().info()
    monkeypatch.setattr(_jit, "kernels", lambda: None)  # as without numba installed
    assert NumpyOps().kernels is None
    with pytest.raises(ImportError, match=r"xpnet\[jit\]"):
        NumpyOps(jit=True)


def test_without_a_cache_directory_the_kernels_compile_in_memory_and_if_numba_fails_numpy_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numba

    real = numba.njit

    def no_cache_dir(*args: object, cache: bool = False, **kw: object) -> object:
        if cache:  # what numba raises where it finds no directory to write its cache to
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(*args, cache=cache, **kw)

    def broken(*args: object, **kw: object) -> object:
        raise RuntimeError("numba is broken here")

    x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
    wide = np.zeros((3, 2, 4, 6), np.float32)
    wide[..., :4] = x.transpose(3, 0, 1, 2)
    xw = wide[..., :4].transpose(1, 2, 3, 0)
    want = NumpyOps(jit=False).max_pool_forward(xw, (2, 2), (2, 2), (0,) * 4)[0]
    monkeypatch.setenv("XPNET_JIT", "1")
    try:
        monkeypatch.setattr(numba, "njit", no_cache_dir)
        _jit.kernels.cache_clear()
        assert _jit.kernels() is not None
        np.testing.assert_array_equal(NumpyOps(jit=True).max_pool_forward(xw, (2, 2), (2, 2), (0,) * 4)[0], want)
        monkeypatch.setattr(numba, "njit", broken)
        _jit.kernels.cache_clear()
        with pytest.warns(RuntimeWarning, match="numba is broken here"):
            assert NumpyOps().kernels is None
        model = _lenet_like(NumpyOps())  # the backend still works, on NumPy's code
        model.fit(np.zeros((4, 12, 12, 1), np.float32), np.zeros(4, int), epochs=1, verbose=0)
        monkeypatch.setattr(numba, "njit", real)
        monkeypatch.setattr(numba.config, "DISABLE_JIT", True)  # would make the loops plain Python
        _jit.kernels.cache_clear()
        assert _jit.kernels() is None
    finally:
        _jit.kernels.cache_clear()


@pytest.mark.parametrize("dtype", [np.float16, ">f4", ">f8", np.longdouble])
def test_dtypes_numba_does_not_take_go_through_numpy(dtype: Any) -> None:
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((2, 3, 4, 6)).astype(dtype)
    x = wide[..., :5].transpose(1, 2, 3, 0)
    dy = rng.standard_normal((3, 2, 2, 2)).astype(dtype)
    results = []
    for jit in (False, True):
        ops = NumpyOps(jit=jit)
        y, arg = ops.max_pool_forward(x, (2, 2), (2, 2), (0,) * 4)
        yr, argr = ops.max_pool_relu_forward(x, (2, 2), (2, 2), (0,) * 4, "relu")
        dx = ops.max_pool_backward(dy, arg, x.shape, (2, 2), (2, 2), (0,) * 4)
        dxr = ops.max_pool_relu_backward(dy, argr, x.shape, (2, 2), (2, 2), (0,) * 4, "relu")
        results.append((y, yr, dx, dxr))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
