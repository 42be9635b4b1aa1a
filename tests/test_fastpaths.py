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


def _inplace(model: Sequential) -> bool:
    """Whether the model's plan updates weights inside backprop (the InPlaceSGD sink)."""
    return model.plan.updates_in_backprop


def _train(monkeypatch: pytest.MonkeyPatch, in_backward: bool, **kw: Any) -> tuple[list[np.ndarray], Any]:
    monkeypatch.setattr(NumpyOps, "runs_in_one_call", lambda self, method, on=in_backward: on)
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
    frozen = np.zeros((5, 6), np.float32)
    frozen.flags.writeable = False
    assert not gemm_sub(a, b, frozen)  # read-only
    square = rng.standard_normal((5, 5)).astype(np.float32)
    assert not gemm_sub(square, square.copy(), square)  # c is a: BLAS would read what it writes
    assert not gemm_sub(a[:, :0], b, np.zeros((0, 6), np.float32))  # empty
    assert not gemm_sub(a, b, np.zeros((5, 12), np.float32)[:, ::2])  # element-strided rows
    get_backend("numpy").gemm_sub(a, b, c)  # NumPy does it instead
    np.testing.assert_allclose(c, -(a.T @ b), rtol=1e-6)


@needs_cblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shifted_gemm_sub_is_the_loop_of_gemm_subs_bit_for_bit(dtype: str) -> None:
    gemm_sub = _cblas.find()
    assert gemm_sub is not None
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 5, 3)).astype(dtype)  # 4 products (5, 3)ᵀ (5, 11) into shifted rows
    b = rng.standard_normal((5, 11)).astype(dtype)
    ldc, offsets = 13, [0, 1, 4, 7]
    buf = rng.standard_normal(2 * ldc + 7 + 11).astype(dtype)
    want = buf.copy()
    rows = np.lib.stride_tricks.as_strided(want, (3, want.size - 2 * ldc), (ldc * want.itemsize, want.itemsize))
    for t, o in enumerate(offsets):
        assert gemm_sub(a[t], b, rows[:, o : o + 11])
    assert _cblas.shifted_gemm_sub(a, b, buf, ldc, offsets)
    np.testing.assert_array_equal(buf, want)
    before = buf.copy()
    assert not _cblas.shifted_gemm_sub(a, b, buf, ldc, [0, 1, 4, 8])  # the last rows would run past buf
    assert not _cblas.shifted_gemm_sub(a, b, buf, ldc, [0, 1, 4])  # one offset per product
    assert not _cblas.shifted_gemm_sub(a, b, buf.astype(np.float16), ldc, offsets)
    assert not _cblas.shifted_gemm_sub(a, b[:, ::2], buf, ldc, offsets)  # not contiguous
    assert not _cblas.shifted_gemm_sub(a, b, b.reshape(-1), ldc, offsets)  # writing what it reads
    assert not _cblas.shifted_gemm_sub(a, b, buf, ldc, [0, 1, -1, 7])  # a negative offset
    assert not _cblas.shifted_gemm_sub(a, b, buf, 10, offsets)  # rows of 11 in a row stride of 10
    assert not _cblas.shifted_gemm_sub(a[:, :0], b[:0], buf, ldc, offsets)  # empty products
    frozen = buf.copy()
    frozen.flags.writeable = False
    assert not _cblas.shifted_gemm_sub(a, b, frozen, ldc, offsets)
    np.testing.assert_array_equal(buf, before)


@needs_cblas
def test_sgd_inside_backprop_gives_the_same_weights_and_logs_as_a_separate_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, fast_logs = _train(monkeypatch, True)
    plain, plain_logs = _train(monkeypatch, False)
    # at batch 32 the GEMM's β = 1 adds exactly what the separate pass subtracts (from batch ~1024
    # on, OpenBLAS's β = 1 kernel may round differently by an ulp)
    for u, v in zip(fast, plain, strict=True):
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
    assert not _inplace(model)
    plain = _model_a()
    plain.build((784,))
    assert _inplace(plain) == get_backend("numpy").runs_in_one_call("gemm_sub")


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
        monkeypatch.setattr(NumpyOps, "runs_in_one_call", lambda self, method, on=flag: on)
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
    assert model.plan.predict_route == "transposed small batches"
    assert model.ops.inference_program(list(model.plan.affine_chain), 300, 32) is not None  # the path under test
    fast = model.predict(x, batch_size=32)
    monkeypatch.setattr(NumpyOps, "transposed_inference_rows", None)
    assert model.ops.inference_program(list(model.plan.affine_chain), 300, 32) is None
    np.testing.assert_allclose(fast, model.predict(x, batch_size=32), rtol=1e-5, atol=1e-7)


def test_fast_paths_step_aside_for_subclasses_patched_methods_and_a_changed_optimizer() -> None:
    class ScaledDense(Dense):
        def forward(self, x: Any, training: bool = False) -> Any:
            return super().forward(x, training) * 0.5

    model = Sequential([Dense(6, "relu", input_shape=(4,)), ScaledDense(3, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    model.build((4,))
    assert not _inplace(model)  # a subclass must declare that it hands all gradients to the sink
    x = np.random.default_rng(0).random((300, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), model.forward(model.ops.asarray(x), False), rtol=1e-6)

    calls: list[int] = []

    class CountedSGD(xpnet.optimizers.SGD):
        def update(self, params: Any, grads: Any, scaled: bool) -> None:
            calls.append(1)
            super().update(params, grads, scaled)

    plain = _model_a(CountedSGD())
    plain.build((784,))
    assert not _inplace(plain)  # a changed update rule must be called
    xs, ys = synthetic_fashion_like(64)
    plain.fit(xs, ys, batch_size=32, epochs=1, verbose=0)
    assert len(calls) == 2


def test_switching_to_adam_during_fit_leaves_the_in_backprop_sgd_path() -> None:
    x, y = synthetic_fashion_like(512)
    model = _model_a()
    moves: list[float] = []

    class Switch(xpnet.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.before = model.get_weights()
            if epoch == 1:
                model.compile(xpnet.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            moves.append(max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), self.before, strict=True)))

    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Switch()])
    assert moves[1] <= 16 * 1e-4 * 1.01  # Adam moves a weight by at most lr per step, 16 steps


def test_predict_leaves_the_last_batch_logits_as_the_layer_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(2).random((1000, 5)).astype(np.float32)
    seen = []
    for rows in (256, None):  # transposed plan, then the layer-by-layer path
        monkeypatch.setattr(NumpyOps, "transposed_inference_rows", rows)
        model = Sequential([Dense(7, "relu", input_shape=(5,)), Dense(3, "softmax")], seed=4)
        model.compile("sgd", "mse", backend="numpy")
        model.predict(x, batch_size=32)
        seen.append(np.array(model.layers[-1].preactivation))
    assert seen[0].shape == seen[1].shape == (8, 3)
    np.testing.assert_allclose(seen[0], seen[1], rtol=1e-5, atol=1e-7)


def test_predict_checks_inputs_first_where_the_blas_would_drop_nan_times_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = Sequential([Dense(4, "relu", input_shape=(3,)), Dense(2, "softmax")], seed=0)
    model.compile("sgd", "mse", backend="numpy")
    x = np.ones((10, 3), np.float32)
    model.predict(x)
    w = model.get_weights()
    w[0][1] = 0.0  # feature 1 has zero weights: a NaN there reaches the output only if NaN·0 = NaN
    model.set_weights(w)
    x[2, 1] = np.nan
    monkeypatch.setattr(NumpyOps, "matmul_keeps_nan", lambda self: False)
    with pytest.raises(ValueError, match=r"1 NaN or inf values \(first at index \(2, 1\)\)"):
        model.predict(x)
