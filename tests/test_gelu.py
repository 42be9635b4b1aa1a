"""gelu and the backend's erf/erfc: accuracy against math.erf, gradients in float64, parity with Keras."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import activations
from xpnet.backend.special import erf, erfc
from xpnet.layers import Dense

DATA = Path(__file__).parent / "data"


def _grid() -> np.ndarray:
    tiny = np.geomspace(1e-300, 1.0, 3000)
    return np.concatenate([np.linspace(-40.0, 40.0, 400_001), tiny, -tiny, [0.0, -0.0, 0.84375, 1.25, 1 / 0.35, 6.0]])


def test_erf_matches_math_erf_to_a_few_ulps_over_the_whole_range() -> None:
    x = _grid()
    ref = np.array([math.erf(v) for v in x])
    got = erf(np, x)
    assert np.max(np.abs(got - ref)) <= 2.3e-16
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) <= 4.5e-16  # relative, tiny x included


def test_erfc_keeps_relative_accuracy_in_the_tails() -> None:
    x = _grid()
    ref = np.array([math.erfc(v) for v in x])
    got = erfc(np, x)
    normal = ref > 1e-300  # below, doubles are subnormal and carry fewer digits on both sides
    assert np.max(np.abs(got - ref)[normal] / ref[normal]) <= 1e-15
    assert np.all(got[~normal] < 1e-300)
    assert erfc(np, np.array([10.0]))[0] == pytest.approx(2.088487583762545e-45, rel=1e-15)  # 1 − erf would give 0


def test_erf_special_values_and_dtype() -> None:
    out = erf(np, np.array([np.nan, np.inf, -np.inf, 1e308, -0.0]))
    assert np.isnan(out[0]) and list(out[1:4]) == [1.0, -1.0, 1.0] and math.copysign(1, out[4]) == -1
    out = erfc(np, np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(out[0]) and list(out[1:]) == [0.0, 2.0]
    x32 = np.linspace(-4, 4, 101, dtype=np.float32)
    assert erf(np, x32).dtype == np.float32 and erfc(np, x32).dtype == np.float32
    assert np.max(np.abs(erf(np, x32) - [math.erf(v) for v in x32])) < 1.5e-7


def test_gelu_matches_keras_numbers() -> None:
    """Keras 3 (torch backend) evaluated keras.activations.gelu on this grid (scripts/make_keras_fixtures.py)."""
    ref = np.load(DATA / "keras_mlp.npz")
    x = ref["gelu_x"]
    np.testing.assert_allclose(activations.gelu(x), ref["gelu_exact"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(activations.gelu(x, approximate=True), ref["gelu_tanh"], rtol=1e-6, atol=1e-7)


def test_gelu_exact_and_tanh_forms_against_float64_definitions() -> None:
    u = np.array([-30.0, -6.0, -1.0, -1e-20, 0.0, 0.5, 2.0, 40.0])
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in u])
    # at u = −30, Φ(u) ≈ e^(−u²/2) turns the last-bit rounding of u/√2 into ~1e-13 relative
    np.testing.assert_allclose(activations.gelu(u), u * phi, rtol=3e-13, atol=0)
    np.testing.assert_allclose(activations.gelu(u[2:]), u[2:] * phi[2:], rtol=2e-15, atol=0)
    c = math.sqrt(2 / math.pi)
    tanh_form = 0.5 * u * (1 + np.tanh(c * (u + 0.044715 * u**3)))
    np.testing.assert_allclose(
        activations.get(activations.GELU(approximate=True)).forward(np, u), tanh_form, rtol=1e-15
    )
    assert activations.gelu(np.array([-30.0]))[0] < 0 and activations.gelu(np.array([-30.0]))[0] > -1e-190


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_gradient_matches_central_differences_in_float64(approximate: bool) -> None:
    act = activations.GELU(approximate)
    u = np.linspace(-7.0, 7.0, 141)  # 0.0 is on the grid: Φ(0) = 1/2 where h/u is 0/0
    eps = 1e-6
    numeric = (act.forward(np, u + eps) - act.forward(np, u - eps)) / (2 * eps)
    analytic = act.backward(np, u, act.forward(np, u), np.ones_like(u))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-8, atol=1e-9)


def test_gelu_by_name_in_a_dense_layer_trains_and_saves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    model = xpnet.Sequential([Dense(8, "gelu", input_shape=(4,)), Dense(3, "softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy")
    hist = model.fit(x, y, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    model.save(tmp_path / "m.keras")
    # bit-identical on the backend it was trained on; within rounding on whatever "auto" picks (CuPy
    # computes erfc and sums in another order)
    again = xpnet.models.load_model(tmp_path / "m.keras", backend="numpy")
    assert isinstance(again.layers[0].activation, activations.GELU)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    default = xpnet.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(default.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    assert activations.get(activations.gelu).name == "gelu"
    with pytest.raises(TypeError, match="approximate must be True or False, received 'yes'"):
        activations.GELU("yes")  # type: ignore[arg-type]
