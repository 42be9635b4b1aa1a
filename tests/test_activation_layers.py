"""Keras's activation layers Softmax, ReLU, ELU and PReLU: values against plain float64 formulas written
element by element, float64 gradient checks, configs, and training through them."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import ELU, Dense, PReLU, ReLU, Sequential, Softmax
from xpnet.gradcheck import check_layer_gradients


def _run(layer: xpnet.layers.Layer, x: np.ndarray, backend: str = "numpy") -> np.ndarray:
    """The layer's inference output for x, through a one-layer float64 model on `backend`."""
    model = Sequential([xpnet.Input(x.shape[1:]), layer], dtype="float64")
    model.to_backend(backend)
    return model.predict(x)


def _elementwise(f: object, x: np.ndarray) -> np.ndarray:
    return np.array([f(float(v)) for v in x.ravel()]).reshape(x.shape)  # type: ignore[operator]


def _relu_ref(v: float, max_value: float | None, slope: float, threshold: float) -> float:
    if v > threshold:
        return v if max_value is None else min(v, max_value)
    return slope * (v - threshold)


GRID = np.array([[-3.0, -1.0, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 5.5, 6.0, 9.0]])


@pytest.mark.parametrize(
    ("max_value", "slope", "threshold"), [(None, 0.0, 0.0), (6.0, 0.0, 0.0), (None, 0.2, 0.0), (4.0, 0.1, 0.5)]
)
def test_relu_layer_matches_keras_piecewise_definition(
    backend: str, max_value: float | None, slope: float, threshold: float
) -> None:
    got = _run(ReLU(max_value, slope, threshold), GRID, backend)
    want = _elementwise(lambda v: _relu_ref(v, max_value, slope, threshold), GRID)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_elu_and_softmax_layers_match_elementwise_formulas(backend: str) -> None:
    np.testing.assert_allclose(
        _run(ELU(0.5), GRID, backend),
        _elementwise(lambda v: v if v > 0 else 0.5 * math.expm1(v), GRID),
        rtol=1e-12,
        atol=1e-15,
    )
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7.0 - 1.0
    x[1, 2, 3] = 800.0  # a huge logit must not overflow
    for axis in (-1, 1, (1, 2)):
        axes = (axis,) if isinstance(axis, int) else axis
        want = np.empty_like(x)
        for b in range(2):
            sample = x[b]
            keep = [a - 1 if a > 0 else a + 2 for a in axes]
            e = np.exp(sample - sample.max(axis=tuple(keep), keepdims=True))
            want[b] = e / e.sum(axis=tuple(keep), keepdims=True)
        np.testing.assert_allclose(_run(Softmax(axis=axis), x, backend), want, rtol=1e-12)
    rows = _run(Softmax(), x, backend).sum(axis=-1)
    np.testing.assert_allclose(rows, 1.0, rtol=1e-12)


def test_prelu_learns_one_slope_per_unshared_axis(backend: str) -> None:
    layer = PReLU(alpha_initializer="random_normal", shared_axes=[1])
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    got = _run(layer, x, backend)
    alpha = layer.get_weights()[0]
    assert alpha.shape == (1, 4)  # Keras: the shared axis has size 1
    want = np.array([[[v if v >= 0 else alpha[0, k] * v for k, v in enumerate(row)] for row in s] for s in x])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_prelu_defaults_are_keras_zero_alpha_per_feature() -> None:
    m = Sequential([xpnet.Input((2, 3)), PReLU()])
    assert m.layers[0].get_weights()[0].shape == (2, 3) and not m.layers[0].get_weights()[0].any()
    assert m.count_params() == 6
    np.testing.assert_array_equal(m.predict(np.array([[[-1.0, 2, -3], [4, -5, 6]]])), [[[0, 2, 0], [4, 0, 6]]])


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Softmax(), (5,)),
        (Softmax(axis=1), (3, 4)),
        (Softmax(axis=[1, 2]), (3, 4)),
        (ReLU(), (5,)),
        (ELU(), (5,)),
        (ELU(0.3), (2, 3)),
        (PReLU(alpha_initializer="random_normal"), (5,)),
        (PReLU(alpha_initializer="random_normal", shared_axes=[1, 2]), (2, 3, 2)),
    ],
    ids=repr,
)
def test_activation_layer_gradients_float64(layer: xpnet.layers.Layer, shape: tuple[int, ...]) -> None:
    result = check_layer_gradients(layer, shape)
    assert result.passed, result


def test_capped_leaky_relu_gradient_in_every_region() -> None:
    # points in each piece (below the threshold, between, above the cap), away from the kinks
    x = np.array([[-2.0, 0.1, 0.7, 1.5, 3.0, 4.5, 7.0], [-0.5, 0.2, 0.9, 2.5, 3.9, 5.0, 8.0]])
    result = check_layer_gradients(ReLU(max_value=4.0, negative_slope=0.2, threshold=0.5), 7, x=x)
    assert result.passed, result


def test_prelu_alpha_trains_and_layers_round_trip_through_config(tmp_path: object) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = np.where(x < 0, 0.5 * x, x).sum(axis=1, keepdims=True)  # a leaky target: alpha must move from 0
    m = Sequential([xpnet.Input((4,)), PReLU(), Dense(1, use_bias=False, kernel_initializer="ones")], seed=1)
    m.layers[1].trainable = False
    m.compile(optimizer=xpnet.optimizers.SGD(0.1), loss="mse")
    m.fit(x, y, epochs=30, batch_size=16, verbose=0)
    alpha = m.layers[0].get_weights()[0]
    assert alpha.dtype == np.float32
    np.testing.assert_allclose(alpha, 0.5, atol=0.05)

    stack = Sequential(
        [xpnet.Input((3, 4)), ReLU(6.0, 0.1, 0.5), ELU(0.2), PReLU(shared_axes=1), Softmax(axis=(1, 2))], seed=2
    )
    again = xpnet.Sequential.from_config(stack.get_config())
    assert [type(layer).__name__ for layer in again.layers] == ["ReLU", "ELU", "PReLU", "Softmax"]
    assert again.layers[0].get_config() == stack.layers[0].get_config()
    assert again.layers[2].shared_axes == [1] and again.layers[3].axis == (1, 2)
    path = f"{tmp_path}/acts.keras"
    stack.layers[2].set_weights([np.full((1, 4), 0.25)])
    stack.save(path)
    loaded = xpnet.models.load_model(path)
    xs = rng.standard_normal((3, 3, 4))
    np.testing.assert_allclose(loaded.predict(xs), stack.predict(xs), rtol=1e-6)


def test_bad_settings_name_the_argument_and_value() -> None:
    with pytest.raises(ValueError, match="max_value must be a finite number >= 0, received -1"):
        ReLU(max_value=-1)
    with pytest.raises(ValueError, match=r"negative_slope .* received -0.5"):
        ReLU(negative_slope=-0.5)
    with pytest.raises(ValueError, match=r"ELU alpha .* received 'x'"):
        ELU("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="axis 0 is the batch axis"):
        Sequential([xpnet.Input((3,)), Softmax(axis=0)])
    with pytest.raises(ValueError, match=r"shared_axes must be axes >= 1 .* received \[0\]"):
        PReLU(shared_axes=[0])
    with pytest.raises(ValueError, match=r"shared_axes \[3\] name axis 3"):
        Sequential([xpnet.Input((3, 4)), PReLU(shared_axes=[3])])
    assert repr(Softmax()) == "Softmax(axis=-1, name=None)"
