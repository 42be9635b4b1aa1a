"""A user's formula is the one that runs: a function activation that mixes rows, an activation subclass
with its own φ under a cross-entropy, a loss subclass with its own `call` (found by review of the
backend-variants work)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xpnet import Dense, Sequential, activations, losses, ops


def centred(x: Any) -> Any:
    """Subtracts the batch mean: the output of a row depends on the other rows of its batch."""
    return x - ops.mean(x, axis=0)


def test_function_activation_runs_on_the_strict_backend() -> None:
    pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    model = Sequential([Dense(2, centred, input_shape=(3,))], seed=0)
    model.compile("sgd", "mse", backend="strict")
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)  # the tape's namespace
    xw = x @ model.layers[0].get_weights()[0] + model.layers[0].get_weights()[1]
    np.testing.assert_allclose(model.predict(x), xw - xw.mean(axis=0), rtol=1e-5, atol=1e-6)  # no tape


def test_predict_applies_a_function_activation_batch_by_batch(backend: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    model = Sequential([Dense(4, "relu", input_shape=(3,)), Dense(2, centred)], seed=0)
    model.compile("sgd", "mse", backend=backend)
    got = model.predict(x, batch_size=4)
    each = np.concatenate([model.predict(x[i : i + 4], batch_size=4) for i in range(0, 10, 4)])
    np.testing.assert_allclose(got, each, rtol=1e-6, atol=1e-6)
    # each batch of 4 (and the last of 2) is centred on its own mean
    np.testing.assert_allclose(got[8:].sum(axis=0), [0.0, 0.0], atol=1e-6)


class _TempSoftmax(activations.Softmax):
    """softmax(u / 4): a user's subclass of the built-in softmax with its own φ and φ'."""

    def forward(self, xp: Any, u: Any) -> Any:
        return super().forward(xp, u / 4.0)

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return super().backward(xp, u, h, dh) / 4.0


def softmax(x: Any) -> Any:
    """A user's function that happens to be named softmax: softmax(u / 4)."""
    return ops.softmax(x / 4.0)


@pytest.mark.parametrize("act", [_TempSoftmax(), softmax], ids=["subclass", "function"])
def test_cross_entropy_with_an_own_softmax_uses_its_output(act: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = Sequential([Dense(3, act, input_shape=(3,))], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.fused_outputs == [False]
    p = model.predict(x).astype(np.float64)
    want = float(np.mean(-np.log(p[np.arange(16), y])))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)


def test_cross_entropy_with_a_subclass_keeping_the_formula_still_fuses() -> None:
    class Plain(activations.Softmax):
        pass

    model = Sequential([Dense(3, Plain(), input_shape=(3,))], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.fused_outputs == [True]


class _Smoothed(losses.CategoricalCrossentropy):
    """Cross-entropy against targets moved towards uniform: its own `call` and `grad`."""

    def call(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        return super().call(xp, y_true * 0.8 + 0.1, y_pred)

    def grad(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        return super().grad(xp, y_true * 0.8 + 0.1, y_pred)


class _KerasStyle(losses.CategoricalCrossentropy):
    """Keras's way: `call(self, y_true, y_pred)` on a subclass of a built-in loss."""

    def call(self, y_true: Any, y_pred: Any) -> Any:  # type: ignore[override]
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


@pytest.mark.parametrize("loss", [_Smoothed(), _KerasStyle()], ids=["own-call-and-grad", "keras-call"])
def test_loss_subclass_with_its_own_call_is_what_fit_and_evaluate_use(loss: losses.Loss) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    model = Sequential([Dense(2, "softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", loss)
    assert model.fused_outputs == [False]
    want = float(np.mean(loss(y, model.predict(x))))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)


def test_loss_subclass_keeping_the_formula_still_fuses() -> None:
    class Named(losses.CategoricalCrossentropy):
        pass

    model = Sequential([Dense(2, "softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", Named())
    assert model.fused_outputs == [True]
    assert losses.get("categorical_crossentropy").fused_activation() == "softmax"


class _Doubling:
    """A mixin with a formula of its own: 2·relu(u)."""

    def forward(self, xp: Any, u: Any) -> Any:
        return 2.0 * xp.maximum(u, 0.0)

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return 2.0 * dh * xp.astype(u > 0.0, dh.dtype)


class _DoubledRelu(_Doubling, activations.ReLU):
    pass


def test_formula_from_a_mixin_drops_the_builtin_variants(ops: Any) -> None:
    act = _DoubledRelu()
    assert act.cuda_forward is act.cuda_backward is None and not act.elementwise
    u = np.array([[1.0, -1.0, 2.0]], np.float32)
    h = ops.activation_forward(act, ops.asarray(u.copy()), in_place=True)
    assert ops.to_numpy(h).tolist() == [[2.0, 0.0, 4.0]]
    _, h = ops.dense_forward(ops.asarray(u), ops.asarray(np.eye(3, dtype=np.float32)), None, act)
    assert ops.to_numpy(h).tolist() == [[2.0, 0.0, 4.0]]
    du = ops.activation_backward(act, ops.asarray(u), h, ops.asarray(np.ones_like(u)))
    assert ops.to_numpy(du).tolist() == [[2.0, 0.0, 2.0]]


class _Halving:
    """A mixin with its own pre-activation formula: half the sparse cross-entropy."""

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Any, u: Any) -> tuple[Any, Any]:
        value, grad = losses.SparseCategoricalCrossentropy.call_and_grad_from_preactivation(self, xp, y_true, u)
        return 0.5 * value, 0.5 * grad


class _HalfSparseCE(_Halving, losses.SparseCategoricalCrossentropy):
    pass


class _SmoothingMixin:
    def call(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        return losses.CategoricalCrossentropy.call(self, xp, y_true * 0.8 + 0.1, y_pred)

    def grad(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        return losses.CategoricalCrossentropy.grad(self, xp, y_true * 0.8 + 0.1, y_pred)


class _SmoothedByMixin(_SmoothingMixin, losses.CategoricalCrossentropy):
    pass


def test_loss_formula_from_a_mixin_is_the_one_that_runs(ops: Any) -> None:
    rng = np.random.default_rng(6)
    u = ops.asarray(rng.standard_normal((5, 3)).astype(np.float32))
    y = ops.asarray(rng.integers(0, 3, 5).astype(np.int32))
    v1, g1, _ = ops.fused_loss(_HalfSparseCE(), activations.Softmax(), y, u, 1.0)
    v2, g2, _ = ops.fused_loss(losses.SparseCategoricalCrossentropy(), activations.Softmax(), y, u, 1.0)
    np.testing.assert_allclose(ops.to_numpy(v1), 0.5 * ops.to_numpy(v2), rtol=1e-6)
    np.testing.assert_allclose(ops.to_numpy(g1), 0.5 * ops.to_numpy(g2), rtol=1e-6, atol=1e-7)
    assert _SmoothedByMixin().fused_activation() is None


def doubled(x: Any) -> Any:
    return x * 2.0


def nan_to_zero(x: Any) -> Any:
    return ops.where(x == x, x, 0.0)


def test_predict_refuses_nan_inputs_through_function_activations() -> None:
    """No NaN probe is shared between functions: the one that keeps NaN must not vouch for the one that drops it."""
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    x[0, 0] = np.nan
    for fn in (doubled, nan_to_zero):  # same backend object, probed (or not) in this order
        for hidden, out in ((fn, "softmax"), ("relu", fn)):
            model = Sequential([Dense(5, hidden, input_shape=(4,)), Dense(3, out)], seed=0)
            model.compile("sgd", "mse", backend="numpy")
            with pytest.raises(ValueError, match=r"predict: x contains 1 NaN or inf"):
                model.predict(x)


class _Cube(activations.Activation):
    name = "cube"

    def forward(self, xp: Any, u: Any) -> Any:
        return u * u * u

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return 3.0 * u * u * dh


class _CubeMSE(losses.MeanSquaredError):
    """A user's loss that fuses with the user's own activation, by its name."""

    def fused_activation(self) -> str | None:
        return "cube"

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Any, u: Any) -> tuple[Any, Any]:
        h = u * u * u
        return xp.mean((h - y_true) ** 2, axis=-1), 6.0 * u * u * (h - y_true) / u.shape[-1]


def test_loss_fusing_with_a_users_own_activation_name_still_compiles_and_fuses() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    model = Sequential([Dense(2, _Cube(), input_shape=(3,))], seed=0)
    model.compile("sgd", _CubeMSE())
    assert model.fused_outputs == [True]
    want = float(np.mean((model.predict(x) - y) ** 2))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)
