"""xpnet.gradcheck: the public finite-difference check passes correct gradients and flags wrong ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Activation, Dense, Dropout, Flatten, Sequential, activations, losses
from xpnet.gradcheck import check_gradients, check_layer_gradients, float64_copy


class ScaledTanh(activations.Activation):
    """tanh whose backward is multiplied by `factor`: factor 1 is right, anything else a bug to catch."""

    name = "scaled_tanh"

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def forward(self, xp: Any, u: Any) -> Any:
        return xp.tanh(u)

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return self.factor * dh * (1.0 - h * h)


class QuarticLoss(losses.Loss):
    """ℓ = mean((ŷ − y)⁴); with wrong=True the gradient forgets the chain rule's factor 4."""

    name = "quartic"

    def __init__(self, wrong: bool = False) -> None:
        self.wrong = wrong

    def call(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        d = y_pred - y_true
        return xp.mean(d * d * d * d, axis=-1)

    def grad(self, xp: Any, y_true: Any, y_pred: Any) -> Any:
        d = y_pred - y_true
        return ((1.0 if self.wrong else 4.0) / y_pred.shape[-1]) * d * d * d


def small_model(activation: Any = "tanh", loss: Any = "mse", dtype: str = "float64") -> Sequential:
    model = Sequential([Dense(4, activation, input_shape=(3,)), Dense(2)], seed=3, dtype=dtype)
    model.compile("sgd", loss, backend="numpy")
    return model


def data(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 2))


def test_correct_model_gradients_pass_and_the_model_is_untouched() -> None:
    rng = np.random.default_rng(0)
    model = Sequential(
        [
            Flatten(input_shape=(2, 3)),
            Dense(5, "elu", kernel_regularizer=xpnet.regularizers.L1L2(0.01, 0.02)),
            Dropout(0.3),
            Dense(4, "softmax"),
        ],
        seed=2,
    )  # float32: the check runs on a float64 copy
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy")
    before = model.get_weights()
    result = check_gradients(model, rng.standard_normal((6, 2, 3)), rng.integers(0, 4, 6))
    assert result.passed and bool(result), str(result)
    assert result.max_rel_error < 1e-6
    assert result.source_dtype == "float32" and result.dtype_checked == "float64"
    assert [w.name for w in result.weights] == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert all(w.checked == w.size for w in result.weights) and len(result.directions) == 3
    assert model.layers[2].iterations == 0 and model.dtype == "float32"
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "PASSED" in str(result)


def test_wrong_activation_backward_is_flagged() -> None:
    x, y = data()
    assert check_gradients(small_model(ScaledTanh(1.0)), x, y).passed
    bad = check_gradients(small_model(ScaledTanh(1.1)), x, y)
    assert not bad.passed
    # the first layer's weights get the wrong δ(1); the output layer's gradient is still right
    assert {"dense/kernel", "dense/bias"} <= set(bad.failures)
    assert "dense_1/kernel" not in bad.failures
    worst = next(w for w in bad.weights if w.name == "dense/bias")
    assert worst.max_rel_error == pytest.approx(0.1 / 1.1, rel=1e-4)  # analytic = 1.1 × numeric
    assert "FAILED" in str(bad) and "FAIL" in str(bad).splitlines()[2]


def test_wrong_custom_loss_gradient_is_flagged() -> None:
    x, y = data()
    good = check_gradients(small_model(loss=QuarticLoss()), x, y)
    bad = check_gradients(small_model(loss=QuarticLoss(wrong=True)), x, y)
    assert good.passed, str(good)
    assert not bad.passed and len(bad.failures) == 4 + len(bad.directions)
    assert bad.max_rel_error == pytest.approx(0.75, rel=1e-4)  # analytic is 1/4 of the truth


def test_float32_model_is_checked_through_a_float64_copy() -> None:
    x, y = data()
    model = small_model("sigmoid", dtype="float32")
    twin = float64_copy(model)
    assert twin.dtype == "float64" and twin is not model
    assert [type(a).__name__ for a in twin.layers] == ["Dense", "Dense"]
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        assert b.dtype == np.float64
        np.testing.assert_array_equal(a.astype(np.float64), b)
    assert check_gradients(model, x, y).passed


def test_large_weights_are_sampled() -> None:
    x, y = data()
    result = check_gradients(small_model(), x, y, max_elements=5, directions=1, seed=4)
    assert [w.checked for w in result.weights] == [5, 4, 5, 2]
    assert result.passed


def test_check_runs_on_every_backend(backend: str) -> None:
    x, _ = data()
    model = Sequential([Dense(3, "relu", input_shape=(3,)), Dense(2, "softmax")], seed=5)
    model.compile("sgd", "categorical_crossentropy", backend=backend)
    y1 = np.eye(2)[[0, 1, 1, 0, 1]]
    result = check_gradients(model, np.abs(x) + 0.1, y1)
    assert result.passed, str(result)


@pytest.mark.parametrize(
    "layer",
    [
        Dense(3, "relu"),
        Dense(3, "elu", use_bias=False),
        Dense(2, "softmax"),
        Dense(3, ScaledTanh(1.0)),
        Activation("sigmoid"),
        Activation("softmax"),
        Dropout(0.4, seed=1),
    ],
    ids=repr,
)
def test_layer_check_passes_correct_layers(layer: xpnet.layers.Layer) -> None:
    result = check_layer_gradients(layer, input_shape=(4,))
    assert result.passed, str(result)
    assert result.weights[0].name == "input"
    assert layer.ops is None  # the layer passed in stays unbuilt


def test_layer_check_flags_a_wrong_backward() -> None:
    result = check_layer_gradients(Dense(3, ScaledTanh(0.5)), 4)
    assert set(result.failures) >= {"input", "dense/kernel", "dense/bias"}
    assert str(result).startswith("Gradient check of layer 'dense' (Dense) in float64")


def test_layer_check_of_flatten_uses_its_shape() -> None:
    result = check_layer_gradients(Flatten(), (2, 3), batch_size=2)
    assert result.passed and result.weights[0].shape == (2, 2, 3)


def test_check_needs_a_compiled_model() -> None:
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    with pytest.raises(ValueError, match="compile"):
        check_gradients(model, np.ones((2, 3)), np.ones((2, 2)))
