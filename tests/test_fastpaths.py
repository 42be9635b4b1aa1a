"""The CPU speed-ups compute the same numbers as the plain code they replace."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, Sequential
from xpnet.backend import _cblas, get_backend
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.parity import synthetic_fashion_like

needs_cblas = pytest.mark.skipif(_cblas.find() is None, reason="NumPy's BLAS has no CBLAS symbol reachable here")


def _model_a(optimizer: Any = "sgd", **dense: Any) -> Sequential:
    model = Sequential(
        [Dense(40, "relu", input_shape=(784,), **dense), Dense(20, "relu"), Dense(10, "softmax")], seed=5
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def _train(monkeypatch: pytest.MonkeyPatch, in_backward: bool, **kw: Any) -> tuple[list[np.ndarray], Any]:
    monkeypatch.setattr(NumpyOps, "sgd_in_backward", in_backward)
    x, y = synthetic_fashion_like(800)
    model = _model_a(**kw)
    hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_split=0.2)
    return model.get_weights(), hist.history


@needs_cblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_sub_is_c_minus_at_b(dtype: str) -> None:
    gemm_sub = _cblas.find()
    assert gemm_sub is not None
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((33, 17)).astype(dtype), rng.standard_normal((33, 12)).astype(dtype)
    wide = rng.standard_normal((17, 20)).astype(dtype)
    c = wide[:, 4:16]  # a row-strided view: written in place, the columns around it untouched
    around = wide[:, :4].copy(), wide[:, 16:].copy()
    a.flags.writeable = False  # user data may be read-only: its address is taken another way
    want = c - a.T @ b
    assert gemm_sub(a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(wide[:, :4], around[0])
    np.testing.assert_array_equal(wide[:, 16:], around[1])


@needs_cblas
def test_gemm_sub_declines_what_it_cannot_do_and_the_backend_falls_back() -> None:
    gemm_sub = _cblas.find()
    assert gemm_sub is not None
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((8, 6)).astype(np.float32)
    c = np.zeros((6, 5), np.float32).T  # column-major: not a layout the call takes
    assert not gemm_sub(a, b, c)
    assert not gemm_sub(a.astype(np.float64), b, np.zeros((5, 6), np.float32))  # mixed dtypes
    assert not gemm_sub(a, b, np.zeros((5, 7), np.float32))  # wrong shape
    get_backend("numpy").gemm_sub(a, b, c)  # NumPy does it instead
    np.testing.assert_allclose(c, -(a.T @ b), rtol=1e-6)


@needs_cblas
def test_sgd_inside_backprop_gives_the_same_weights_and_logs_as_a_separate_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, fast_logs = _train(monkeypatch, True)
    plain, plain_logs = _train(monkeypatch, False)
    for u, v in zip(fast, plain, strict=True):  # the GEMM's β = 1 adds what the separate pass subtracts
        np.testing.assert_array_equal(u, v)
    assert fast_logs == plain_logs


def test_generic_gemm_sub_and_bias_sub_match_numpy() -> None:
    pytest.importorskip("array_api_strict")
    ops = get_backend("strict")
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    c0, bias0 = rng.standard_normal((4, 3)), rng.standard_normal(3)
    want_c, want_bias = c0 - a.T @ b, bias0 - b.sum(axis=0)
    c, bias = ops.asarray(c0.copy()), ops.asarray(bias0.copy())
    ops.gemm_sub(ops.asarray(a), ops.asarray(b), c)
    ops.bias_sub(ops.asarray(b), bias)
    np.testing.assert_allclose(ops.to_numpy(c), want_c, rtol=1e-12)
    np.testing.assert_allclose(ops.to_numpy(bias), want_bias, rtol=1e-12)


@pytest.mark.parametrize(
    "case",
    ["momentum", "l2", "adam"],
)
def test_the_in_backprop_update_is_only_taken_for_plain_sgd_without_penalties(case: str) -> None:
    kw: dict[str, Any] = {
        "momentum": {"optimizer": xpnet.optimizers.SGD(0.01, momentum=0.9)},
        "l2": {"kernel_regularizer": "l2"},
        "adam": {"optimizer": "adam"},
    }[case]
    model = _model_a(**kw)
    model.build((784,))
    assert not model._sgd_in_backward()
    assert _model_a()._sgd_in_backward() == get_backend("numpy").sgd_in_backward


@needs_cblas
def test_compute_gradients_during_fit_reads_gradients_without_moving_weights() -> None:
    x, y = synthetic_fashion_like(256)
    model = _model_a()
    seen: list[float] = []

    class Probe(xpnet.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 3:
                before = model.get_weights()
                _, grads = model.compute_gradients(x[:64], y[:64])
                seen.append(float(np.abs(grads[0]).sum()))
                for u, v in zip(before, model.get_weights(), strict=True):
                    np.testing.assert_array_equal(u, v)

    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen and seen[0] > 0.0


def test_dropout_model_with_sgd_trains_identically_with_and_without_the_fast_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = synthetic_fashion_like(640)
    out = []
    for flag in (True, False):
        monkeypatch.setattr(NumpyOps, "sgd_in_backward", flag)
        model = Sequential([Dense(32, "relu", input_shape=(784,)), Dropout(0.2), Dense(10, "softmax")], seed=9)
        model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
        model.fit(x, y, batch_size=64, epochs=2, verbose=0)
        out.append(model.get_weights())
    for u, v in zip(*out, strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("hidden", ["relu", "tanh", "heaviside"])
def test_predict_finds_nan_inputs_whether_or_not_it_checks_inputs_first(hidden: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.random((50, 6)).astype(np.float32)
    model = Sequential([Dense(8, hidden, input_shape=(6,)), Dropout(0.5), Dense(3, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.predict(x)  # builds the model: afterwards the check may run on the outputs
    bad = x.copy()
    bad[7, 2] = np.nan
    for batch in (4, 50):
        with pytest.raises(ValueError, match=r"1 NaN or inf values \(first at index \(7, 2\)\)"):
            model.predict(bad, batch_size=batch)
    bad[7, 2] = np.inf  # relu or tanh may absorb a lone inf into a finite limit; heaviside checks inputs first
    if hidden == "heaviside":
        with pytest.raises(ValueError, match="NaN or inf"):
            model.predict(bad)


def test_predict_applies_the_output_activation_once_with_the_same_numbers() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((37, 5)).astype(np.float64)
    for out_act in ("softmax", "sigmoid", "linear"):
        model = Sequential([Dense(7, "relu", input_shape=(5,)), Dense(4, out_act)], seed=2, dtype="float64")
        model.compile("sgd", "mse")
        w1, b1, w2, b2 = model.get_weights()
        u = np.maximum(x @ w1 + b1, 0) @ w2 + b2
        want = {
            "softmax": np.exp(u - u.max(1, keepdims=True)) / np.exp(u - u.max(1, keepdims=True)).sum(1, keepdims=True),
            "sigmoid": 1 / (1 + np.exp(-u)),
            "linear": u,
        }[out_act]
        for batch in (1, 8, 37):
            np.testing.assert_allclose(model.predict(x, batch_size=batch), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("hidden", ["relu", "tanh"])
def test_small_batch_predict_in_transposed_layout_matches_the_layer_path(
    monkeypatch: pytest.MonkeyPatch, hidden: str
) -> None:
    from xpnet import Flatten

    rng = np.random.default_rng(8)
    x = rng.random((300, 6, 5)).astype(np.float32)
    model = Sequential(
        [Flatten(input_shape=(6, 5)), Dense(16, hidden), Dropout(0.3), Dense(8, hidden), Dense(4, "softmax")], seed=3
    )
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    model.build((6, 5))
    assert model._transposed_plan(300, 32) is not None  # the path under test is taken
    fast = model.predict(x, batch_size=32)
    monkeypatch.setattr(NumpyOps, "transposed_inference_rows", None)
    assert model._transposed_plan(300, 32) is None
    np.testing.assert_allclose(fast, model.predict(x, batch_size=32), rtol=1e-5, atol=1e-7)
