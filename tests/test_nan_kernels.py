"""NaN through every backend hot spot exactly as through the generic array code (NumPy's semantics).

A fused kernel that turns NaN into 0 hides a diverged run: the loss and predictions look finite.
Each check runs the backend's method and the generic `Ops` method on the same device and compares
where the NaNs are, then the numbers elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import activations
from xpnet.backend import Ops
from xpnet.layers import Conv2D, Dense, Flatten, MaxPooling2D


def _same_nans_and_values(a: np.ndarray, b: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN positions differ")
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-5, atol=2e-6, err_msg=what)


@pytest.mark.parametrize("act_name", ["relu", "elu", "sigmoid", "tanh"])
def test_dense_activation_keeps_nan_forward_and_backward(ops: Ops, act_name: str) -> None:
    act = activations.get(act_name)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    x[1, 2] = np.nan  # row 1 of u is NaN everywhere (NaN·w), on active and inactive units alike
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dh = rng.standard_normal((6, 4)).astype(np.float32)
    dh[3, :] = np.nan  # a NaN gradient arriving at units of every sign
    xs, ws, bs, dhs = (ops.asarray(a) for a in (x, w, b, dh))
    u1, h1 = ops.dense_forward(xs, ws, bs, act)
    u2, h2 = Ops.dense_forward(ops, xs, ws, bs, act)
    got_h, want_h = ops.to_numpy(h1), ops.to_numpy(h2)
    assert np.isnan(want_h[1]).all()
    _same_nans_and_values(got_h, want_h, f"{act_name} forward")
    d1 = ops.to_numpy(ops.activation_backward(act, u1, h1, dhs))
    d2 = ops.to_numpy(Ops.activation_backward(ops, act, u2, h2, dhs))
    assert np.isnan(d2[3]).all()
    _same_nans_and_values(d1, d2, f"{act_name} backward")


def test_inplace_activation_keeps_nan(ops: Ops) -> None:
    u = np.array([[np.nan, -1.0, 0.0, 2.0]], np.float32)
    for name in ("relu", "elu"):
        act = activations.get(name)
        got = ops.to_numpy(ops.activation_forward(act, ops.asarray(u), in_place=True))
        assert np.isnan(got[0, 0]) and not np.isnan(got[0, 1:]).any(), (name, got)


@pytest.mark.parametrize(("size", "strides", "pads"), [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1))])
def test_max_pool_nan_window_value_and_argmax_match_generic(
    ops: Ops, size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]
) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    # NaN first in a window, last in a window, and before a larger value (the argmax must not move past it)
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 1, 1] = np.nan
    x[1, 2, 2, 2] = np.nan
    x[1, 2, 3, 2] = 50.0
    x[1, 3, 3, 0] = -np.inf
    xs = ops.asarray(x)
    y1, a1 = ops.max_pool_forward(xs, size, strides, pads)
    y2, a2 = Ops.max_pool_forward(ops, xs, size, strides, pads)
    got_y, want_y = ops.to_numpy(y1), ops.to_numpy(y2)
    assert np.isnan(want_y).sum() >= 3
    _same_nans_and_values(got_y, want_y, "max pool")
    if hasattr(a1, "dtype"):  # NumPy's 2×2 path keeps its own record of the argmax: its gradient shows it
        np.testing.assert_array_equal(ops.to_numpy(a1).astype(np.int32), ops.to_numpy(a2).astype(np.int32))
    dy = ops.asarray(rng.standard_normal(want_y.shape).astype(np.float32))
    g1 = ops.to_numpy(ops.max_pool_backward(dy, a1, x.shape, size, strides, pads))
    g2 = ops.to_numpy(Ops.max_pool_backward(ops, dy, a2, x.shape, size, strides, pads))
    np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-7)


def test_max_pool_then_relu_keeps_nan(ops: Ops) -> None:
    x = np.full((1, 4, 4, 1), -1.0, np.float32)
    x[0, 0, 1, 0] = np.nan
    relu = activations.get("relu")
    y, _ = ops.max_pool_relu_forward(ops.asarray(x), (2, 2), (2, 2), (0, 0, 0, 0), relu)
    got = ops.to_numpy(y)[0, :, :, 0]
    assert np.isnan(got[0, 0]) and (got.ravel()[1:] == 0).all(), got


def _nan_models() -> list[xpnet.Sequential]:
    dense = xpnet.Sequential([Dense(8, "relu", input_shape=(6,)), Dense(8, "elu"), Dense(3, "softmax")], seed=2)
    conv = xpnet.Sequential(
        [
            Conv2D(2, 3, activation="relu", padding="same", input_shape=(6, 6, 1)),
            MaxPooling2D(2),
            Flatten(),
            Dense(3, "softmax"),
        ],
        seed=2,
    )
    return [dense, conv]


def test_a_nan_weight_gives_the_same_predictions_and_training_on_every_backend(backend: str) -> None:
    rng = np.random.default_rng(8)
    data = [rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal((8, 6, 6, 1)).astype(np.float32)]
    y = rng.integers(0, 3, 8)
    results: dict[str, list[tuple[np.ndarray, float, int]]] = {}
    for name in ("numpy", backend):
        results[name] = []
        for model, x in zip(_nan_models(), data, strict=True):
            model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend=name)
            # one unit's weight NaN (as after a diverged step): a kernel that maps NaN to 0 hides it downstream
            kernel = model.layers[0].params["kernel"]
            kernel[(0,) * kernel.ndim] = float("nan")
            pred = model.predict(x, verbose=0)
            with pytest.warns(RuntimeWarning, match="nan"):
                hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
            nan_weights = sum(int(np.isnan(w).sum()) for w in model.get_weights())
            results[name].append((pred, hist.history["loss"][0], nan_weights))
    for (p1, l1, w1), (p2, l2, w2) in zip(results["numpy"], results[backend], strict=True):
        assert np.isnan(p1).all() and np.isnan(l1) and w1 > 0
        _same_nans_and_values(p2, p1, "predictions")
        # the run goes NaN and says so on both (which weights a NaN reaches in one GEMM depends on the
        # BLAS: a reference BLAS skips zero terms)
        assert np.isnan(l2) and w2 > 0
