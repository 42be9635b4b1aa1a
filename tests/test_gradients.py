"""Float64 finite-difference checks of every layer, activation, loss and regularizer.

Each check compares the analytic gradient with central differences, both on the full
gradient (small sizes) and along random directions (Chainer's check_backward style).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import activations, losses, regularizers
from xpnet.layers import Activation, Dense, Dropout, Flatten

EPS = 1e-6


def numeric_grad(f: Any, x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + EPS
        fp = f(x)
        x[i] = old - EPS
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * EPS)
    return g


def assert_close(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5) -> None:
    scale = max(1.0, float(np.abs(numeric).max()))
    err = float(np.abs(analytic - numeric).max()) / scale
    assert err < rtol, f"max relative gradient error {err:.3e}"


SMOOTH = ["linear", "sigmoid", "tanh", "relu", "elu", "selu", "softplus", "softsign", "swish", "leaky_relu", "gelu"]


# Inputs kept away from kinks (relu/elu at 0, abs at 0) where differences are not derivatives.
def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)


@pytest.mark.parametrize(
    "name",
    [
        "linear",
        "sigmoid",
        "tanh",
        "relu",
        "elu",
        "selu",
        "softplus",
        "softsign",
        "swish",
        "leaky_relu",
        "gelu",
        "softmax",
    ],
)
def test_activation_gradient_matches_finite_differences(name: str, rng: np.random.Generator) -> None:
    act = activations.get(name)
    u = away_from_zero(rng, (4, 5))
    w = rng.standard_normal((4, 5))  # L = Σ w·φ(u), so dL/dh = w

    def f(uu: np.ndarray) -> float:
        return float(np.sum(w * act.forward(np, uu)))

    h = act.forward(np, u)
    assert_close(act.backward(np, u, h, w), numeric_grad(f, u.copy()))


@pytest.mark.parametrize("name", ["heaviside", "sign"])
def test_step_activations_forward_and_refuse_backward(name: str) -> None:
    act = activations.get(name)
    u = np.array([[-2.0, 0.0, 3.0]])
    expected = {"heaviside": [[0.0, 1.0, 1.0]], "sign": [[-1.0, 0.0, 1.0]]}[name]
    np.testing.assert_array_equal(act.forward(np, u), expected)
    with pytest.raises(activations.NotDifferentiableError, match="step function"):
        act.backward(np, u, act.forward(np, u), np.ones_like(u))


def _targets(loss: losses.Loss, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    if loss.sparse:
        return rng.integers(0, k, n).astype(np.int32)
    if isinstance(loss, losses.CategoricalCrossentropy):
        return np.eye(k)[rng.integers(0, k, n)]
    if isinstance(loss, (losses.BinaryCrossentropy, losses.Hinge)):
        return rng.integers(0, 2, (n, k)).astype(np.float64)
    if isinstance(loss, losses.Poisson):
        return rng.poisson(2.0, (n, k)).astype(np.float64)
    return rng.standard_normal((n, k))


def _predictions(loss: losses.Loss, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    if loss.from_logits:
        return rng.standard_normal((n, k)) * 3
    if isinstance(loss, losses.CategoricalCrossentropy):
        return activations.Softmax().forward(np, rng.standard_normal((n, k)))
    if isinstance(loss, (losses.BinaryCrossentropy, losses.Poisson)):
        return rng.uniform(0.1, 0.9, (n, k))
    return away_from_zero(rng, (n, k))


LOSSES = [
    losses.MeanSquaredError(),
    losses.MeanAbsoluteError(),
    losses.Poisson(),
    losses.Hinge(),
    losses.BinaryCrossentropy(),
    losses.BinaryCrossentropy(from_logits=True),
    losses.CategoricalCrossentropy(),
    losses.CategoricalCrossentropy(from_logits=True),
    losses.SparseCategoricalCrossentropy(),
    losses.SparseCategoricalCrossentropy(from_logits=True),
]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_loss_gradient_matches_finite_differences(loss: losses.Loss, rng: np.random.Generator) -> None:
    n, k = 5, 3
    y = _targets(loss, rng, n, k)
    p = _predictions(loss, rng, n, k)
    if isinstance(loss, losses.Hinge):
        p = np.where(np.abs(1 - np.abs(p)) < 0.05, 0.5, p)  # keep off the hinge's kink

    def f(pp: np.ndarray) -> float:
        return float(np.sum(loss.call(np, y, pp)))

    assert_close(loss.grad(np, y, p), numeric_grad(f, p.copy()))


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss.fused_activation()], ids=repr)
def test_fused_preactivation_gradient_matches_finite_differences(loss: losses.Loss, rng: np.random.Generator) -> None:
    n, k = 5, 4
    y = _targets(loss, rng, n, k)
    u = rng.standard_normal((n, k)) * 3
    act = activations.get(loss.fused_activation())

    def f(uu: np.ndarray) -> float:
        return float(np.sum(loss.call_and_grad_from_preactivation(np, y, uu)[0]))

    value, grad = loss.call_and_grad_from_preactivation(np, y, u)
    assert_close(grad, numeric_grad(f, u.copy()))
    if not loss.from_logits:  # the fused value equals the plain loss of the activated output
        np.testing.assert_allclose(value, loss.call(np, y, act.forward(np, u)), rtol=1e-6)


def test_softmax_cross_entropy_is_finite_for_huge_logits() -> None:
    u = np.array([[1e4, -1e4, 0.0], [-5e3, 5e3, 1e3]], dtype=np.float32)
    y = np.array([0, 2], dtype=np.int32)
    value, grad = losses.SparseCategoricalCrossentropy().call_and_grad_from_preactivation(np, y, u)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, [0.0, 4000.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, 1, -1]], atol=1e-6)
    bce = losses.BinaryCrossentropy(from_logits=True)
    v, g = bce.call_and_grad_from_preactivation(np, np.array([[1.0], [0.0]]), np.array([[-1e4], [1e4]]))
    np.testing.assert_allclose(v, [1e4, 1e4])
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("reg", [regularizers.L1(0.03), regularizers.L2(0.02), regularizers.L1L2(0.01, 0.05)], ids=repr)
def test_regularizer_gradient_matches_finite_differences(
    reg: regularizers.Regularizer, rng: np.random.Generator
) -> None:
    w = away_from_zero(rng, (3, 4))
    assert_close(reg.grad(np, w), numeric_grad(lambda ww: float(reg.penalty(np, ww)), w.copy()))


def test_regularizer_penalty_values() -> None:
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert regularizers.L1(0.1).penalty(np, w) == pytest.approx(0.1 * 3.5)
    assert regularizers.L2(0.1).penalty(np, w) == pytest.approx(0.1 * 5.25)
    assert regularizers.L1L2(0.1, 0.2).penalty(np, w) == pytest.approx(0.35 + 0.2 * 5.25)


def model_gradcheck(model: xpnet.Sequential, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Full finite-difference check of compute_gradients over every weight of a float64 model."""
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]

    def loss_at(weights: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        for d in dropouts:
            d.iterations = 0  # same dropout mask for every evaluation
        model.set_weights(weights)
        return model.compute_gradients(x, y)

    weights = model.get_weights()
    _, analytic = loss_at(weights)
    for i, w in enumerate(weights):

        def f(ww: np.ndarray, i: int = i) -> float:
            return loss_at([*weights[:i], ww, *weights[i + 1 :]])[0]

        assert_close(analytic[i], numeric_grad(f, w.copy()))
    # and along a random direction through all weights at once
    d = [rng.standard_normal(w.shape) for w in weights]
    plus = loss_at([w + EPS * v for w, v in zip(weights, d, strict=True)])[0]
    minus = loss_at([w - EPS * v for w, v in zip(weights, d, strict=True)])[0]
    directional = sum(float(np.sum(g * v)) for g, v in zip(analytic, d, strict=True))
    assert directional == pytest.approx((plus - minus) / (2 * EPS), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize(
    "activation",
    ["linear", "sigmoid", "tanh", "relu", "elu", "selu", "softplus", "softsign", "swish", "leaky_relu", "gelu"],
)
def test_dense_layer_gradient(activation: str, rng: np.random.Generator) -> None:
    model = xpnet.Sequential([Dense(4, activation, input_shape=(3,)), Dense(2)], seed=3, dtype="float64")
    model.compile("sgd", "mse", backend="numpy")
    model_gradcheck(model, away_from_zero(rng, (6, 3)), rng.standard_normal((6, 2)), rng)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_softmax_output_gradient_fused_and_plain(loss: str, rng: np.random.Generator) -> None:
    model = xpnet.Sequential([Dense(5, "tanh", input_shape=(4,)), Dense(3, "softmax")], seed=1, dtype="float64")
    model.compile("sgd", loss, backend="numpy")
    y = rng.integers(0, 3, 7) if loss.startswith("sparse") else np.eye(3)[rng.integers(0, 3, 7)]
    model_gradcheck(model, rng.standard_normal((7, 4)), y, rng)


def test_flatten_dropout_activation_layers_gradient(rng: np.random.Generator) -> None:
    model = xpnet.Sequential(
        [
            Flatten(input_shape=(2, 3)),
            Dense(5, use_bias=False),
            Activation("tanh"),
            Dropout(0.4, seed=7),
            Dense(4, "elu"),
            Activation("softmax"),
        ],
        seed=2,
        dtype="float64",
    )
    model.compile("sgd", "categorical_crossentropy", backend="numpy")
    model_gradcheck(model, rng.standard_normal((6, 2, 3)), np.eye(4)[rng.integers(0, 4, 6)], rng)


def test_regularized_model_gradient(rng: np.random.Generator) -> None:
    model = xpnet.Sequential(
        [
            Dense(4, "sigmoid", kernel_regularizer=regularizers.L1L2(0.01, 0.02), input_shape=(3,)),
            Dense(1, bias_regularizer="l2"),
        ],
        seed=5,
        dtype="float64",
    )
    model.compile("sgd", "mse", backend="numpy")
    model_gradcheck(model, rng.standard_normal((5, 3)), rng.standard_normal((5, 1)), rng)


def test_layers_backward_through_strict_backend_match_numpy(rng: np.random.Generator) -> None:
    pytest.importorskip("array_api_strict")
    x, y = rng.standard_normal((6, 2, 3)), rng.integers(0, 4, 6)
    grads = {}
    for b in ("numpy", "strict"):
        model = xpnet.Sequential(
            [Flatten(input_shape=(2, 3)), Dense(5, "relu"), Dropout(0.3), Dense(4, "softmax")], seed=9, dtype="float64"
        )
        model.compile("sgd", "sparse_categorical_crossentropy", backend=b)
        grads[b] = model.compute_gradients(x, y)
    assert grads["numpy"][0] == pytest.approx(grads["strict"][0], rel=1e-12)
    for a, b in zip(grads["numpy"][1], grads["strict"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# Keras divides probabilities by their row sum before the log; the gradient must follow.
@pytest.mark.parametrize("loss", [losses.CategoricalCrossentropy(), losses.SparseCategoricalCrossentropy()], ids=repr)
def test_cross_entropy_gradient_on_rows_not_summing_to_one(loss: losses.Loss, rng: np.random.Generator) -> None:
    n, k = 5, 4
    p = rng.uniform(0.05, 0.6, (n, k))  # row sums from about 0.2 to 2.4
    targets = [_targets(loss, rng, n, k)]
    if not loss.sparse:
        targets.append(rng.dirichlet(np.ones(k), n))  # soft targets
    for y in targets:

        def f(pp: np.ndarray, y: np.ndarray = y) -> float:
            return float(np.sum(loss.call(np, y, pp)))

        assert_close(loss.grad(np, y, p), numeric_grad(f, p.copy()))


# Where the clip to [1e-7, 1 - 1e-7] cuts p the loss is constant, so its derivative is 0 (it was ±1e7).
# Clipped entries sit well outside [0, 1] here, so that the differences stay in the clipped region
# (p = 0 exactly is checked in test_reference_values.py).
@pytest.mark.parametrize(
    ("loss", "y", "p"),
    [
        (losses.BinaryCrossentropy(), [[1.0, 0.0, 1.0]], [[-0.3, 1.4, 0.6]]),
        (losses.CategoricalCrossentropy(), [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[-0.2, 1.4, -0.2], [0.3, -0.1, 0.5]]),
        (losses.SparseCategoricalCrossentropy(), [0, 2], [[-0.2, 1.4, -0.2], [0.3, -0.1, 0.5]]),
    ],
    ids=repr,
)
def test_clipped_cross_entropy_gradient_is_the_derivative_of_the_clipped_loss(
    loss: losses.Loss, y: list, p: list
) -> None:
    yt = np.asarray(y) if loss.sparse else np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    g = loss.grad(np, yt, pp)
    zero = (slice(0, 1), slice(0, 2)) if isinstance(loss, losses.BinaryCrossentropy) else (slice(0, 1), slice(None))
    np.testing.assert_array_equal(g[zero], 0.0)  # every one of these entries is clipped
    assert_close(g, numeric_grad(lambda q: float(np.sum(loss.call(np, yt, q))), pp.copy()))


def test_hinge_gradient_with_signed_labels(rng: np.random.Generator) -> None:
    loss = losses.Hinge()
    y = rng.integers(-1, 2, (5, 3)).astype(np.float64)  # -1, 0 and 1: taken as they are
    y[0] = [-1.0, 0.0, 1.0]
    p = away_from_zero(rng, (5, 3))
    p = np.where(np.abs(1 - np.abs(p)) < 0.05, 0.5, p)
    assert_close(loss.grad(np, y, p), numeric_grad(lambda q: float(np.sum(loss.call(np, y, q))), p.copy()))
