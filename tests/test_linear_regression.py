"""Linear regression (xpnet.linear_regression): normal equations vs gradient descent; and the MLP that fits sin(x)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from xpnet import linear_regression

W_TRUE, B_TRUE = np.array([1.5, -2.0, 0.5]), 0.7


def standardized(n: int = 100, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised x (n, 3) (zero mean, unit variance: Hessian 2·I-ish) and y = x·W_TRUE + B_TRUE + noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x, x @ W_TRUE + B_TRUE + noise * rng.standard_normal(n)


def _script(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"xpnet_{name}_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ closed form
def test_closed_form_equals_polyfit() -> None:
    t = np.linspace(-2.0, 3.0, 40)
    x = np.column_stack([t, t**2])
    y = 1.0 - 2.0 * t + 0.5 * t**2  # noiseless: the known coefficients
    w, b = linear_regression.closed_form(x, y)
    np.testing.assert_allclose(w, [-2.0, 0.5], atol=1e-12)
    assert b == pytest.approx(1.0, abs=1e-12)
    noisy = y + np.random.default_rng(0).normal(0.0, 0.3, t.shape)
    w, b = linear_regression.closed_form(x, noisy)
    c2, c1, c0 = np.polyfit(t, noisy, 2)
    np.testing.assert_allclose(w, [c1, c2], rtol=1e-10)
    assert b == pytest.approx(c0, rel=1e-10)


def test_closed_form_multi_output_and_no_intercept() -> None:
    x, y = standardized(noise=0.0)
    y2 = np.column_stack([y, 3.0 * x[:, 0] - 1.0])
    w, b = linear_regression.closed_form(x, y2)
    assert w.shape == (3, 2) and np.shape(b) == (2,)
    np.testing.assert_allclose(w, np.column_stack([W_TRUE, [3.0, 0.0, 0.0]]), atol=1e-12)
    np.testing.assert_allclose(b, [B_TRUE, -1.0], atol=1e-12)
    w0, b0 = linear_regression.closed_form(x, x @ W_TRUE, fit_intercept=False)
    np.testing.assert_allclose(w0, W_TRUE, atol=1e-12)
    assert b0 == 0.0


def test_closed_form_is_accurate_where_the_explicit_inverse_is_not() -> None:
    # degree-7 polynomial on [1, 2]: cond(X) ≈ 1.3e8 after centring, so cond(XᵀX) ≈ 1.7e16 (float64 gives up).
    # Measured max residual: lstsq 7e-13, explicit inverse 3.9.
    t = np.linspace(1.0, 2.0, 60)
    x = np.column_stack([t**k for k in range(1, 8)])
    coef = np.arange(1.0, 8.0)
    y = x @ coef + 0.5
    w, b = linear_regression.closed_form(x, y)
    fit_err = np.max(np.abs(x @ w + b - y))
    xc, yc = x - x.mean(axis=0), y - y.mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_inv = np.linalg.inv(xc.T @ xc) @ (xc.T @ yc)  # what closed_form must never do
    inv_err = np.max(np.abs(xc @ w_inv - yc))
    assert fit_err < 1e-6 < inv_err


def test_closed_form_rank_deficient_warns_and_returns_minimum_norm() -> None:
    x, _ = standardized()
    dup = np.column_stack([x[:, 0], x[:, 0]])
    with pytest.warns(RuntimeWarning, match="rank 1 < 2"):
        w, _ = linear_regression.closed_form(dup, 2.0 * x[:, 0])
    np.testing.assert_allclose(w, [1.0, 1.0], atol=1e-12)


def test_mse_helper() -> None:
    x, y = standardized()
    assert linear_regression.mse(x, y, W_TRUE, B_TRUE) == pytest.approx(0.0, abs=1e-28)
    assert linear_regression.mse(x, y, np.zeros(3), 0.0) == pytest.approx(float(np.mean(y**2)))


# ------------------------------------------------------------------------------------ gradient descent
GD = {  # mode: (learning_rate, epochs), measured margin: each lands within ~1e-15 of the closed form (noiseless)
    "batch": (0.3, 80),
    "minibatch": (0.1, 40),
    "stochastic": (0.05, 20),
}


@pytest.mark.parametrize("mode", list(GD))
def test_gradient_descent_matches_the_closed_form(backend: str, mode: str) -> None:
    x, y = standardized(noise=0.0)
    w0, b0 = linear_regression.closed_form(x, y)
    lr, epochs = GD[mode]
    w, b, hist = linear_regression.gradient_descent(
        x, y, mode=mode, learning_rate=lr, epochs=epochs, batch_size=16, seed=0, backend=backend
    )
    np.testing.assert_allclose(w, w0, atol=1e-4)
    assert b == pytest.approx(b0, abs=1e-4)
    assert np.max(np.abs(w - w0)) < 1e-10  # actually: rounding error
    assert hist.shape == (epochs + 1,) and hist[0] == pytest.approx(np.mean(y**2))
    assert hist[-1] < 1e-20


@pytest.mark.parametrize(
    ("mode", "lr", "decay", "epochs"),
    [("batch", 0.3, 0.0, 100), ("minibatch", 0.1, 0.5, 200), ("stochastic", 0.02, 1.0, 100)],
)
def test_gradient_descent_with_noise_reaches_the_least_squares_solution(
    mode: str, lr: float, decay: float, epochs: int
) -> None:
    # measured max |w − w_closed| for seeds 0-11: batch ~1e-15, minibatch ≤ 4.9e-5, stochastic ≤ 1e-5
    x, y = standardized(n=200, noise=0.01)
    w0, b0 = linear_regression.closed_form(x, y)
    assert np.max(np.abs(w0 - W_TRUE)) > 3e-4  # the target is the noisy least-squares fit, not the truth
    w, b, hist = linear_regression.gradient_descent(
        x, y, mode=mode, learning_rate=lr, epochs=epochs, batch_size=16, seed=0, lr_decay=decay
    )
    np.testing.assert_allclose(w, w0, atol=1e-4)
    assert b == pytest.approx(b0, abs=1e-4)
    assert hist[-1] == pytest.approx(linear_regression.mse(x, y, w0, b0), rel=1e-4)


def test_batch_gd_loss_decreases_monotonically_and_sgd_overall(backend: str) -> None:
    x, y = standardized(noise=0.5)
    _, _, batch = linear_regression.gradient_descent(x, y, "batch", learning_rate=0.3, epochs=30, backend=backend)
    assert np.all(np.diff(batch) <= 1e-12)  # lr 0.3 < 1/L: every step lowers the loss
    assert batch[-1] < batch[0] / 10
    _, _, sgd = linear_regression.gradient_descent(
        x, y, "stochastic", learning_rate=0.01, epochs=5, seed=0, backend=backend
    )
    assert sgd[-1] < sgd[0] / 10 and sgd[-1] <= np.min(sgd[:2])


def test_float32_and_multi_output() -> None:
    x, y = standardized()
    y2 = np.column_stack([y, -y])
    w, b, _ = linear_regression.gradient_descent(
        x, y2, "minibatch", learning_rate=0.1, epochs=40, seed=0, dtype="float32"
    )
    assert w.shape == (3, 2) and np.shape(b) == (2,) and w.dtype == np.float64
    np.testing.assert_allclose(w, np.column_stack([W_TRUE, -W_TRUE]), atol=1e-5)
    np.testing.assert_allclose(b, [B_TRUE, -B_TRUE], atol=1e-5)


def test_no_intercept_keeps_b_zero() -> None:
    x, _ = standardized()
    w, b, _ = linear_regression.gradient_descent(x, x @ W_TRUE, learning_rate=0.3, epochs=80, fit_intercept=False)
    np.testing.assert_allclose(w, W_TRUE, atol=1e-10)
    assert b == 0.0


def test_divergence_warns() -> None:
    x, y = standardized()
    with pytest.warns(RuntimeWarning, match="diverged"), np.errstate(all="ignore"):
        linear_regression.gradient_descent(x, y, "batch", learning_rate=5.0, epochs=2000)


def test_bad_inputs_raise() -> None:
    x, y = standardized()
    with pytest.raises(ValueError, match=r"2-D.*reshape\(-1, 1\)"):
        linear_regression.closed_form(x[:, 0], y)
    with pytest.raises(ValueError, match="y must have shape"):
        linear_regression.closed_form(x, y[:-1])
    with pytest.raises(ValueError, match="y must have shape"):
        linear_regression.gradient_descent(x, y.reshape(-1, 1, 1))
    with pytest.raises(ValueError, match="NaN"):
        linear_regression.closed_form(np.where(x > 2, np.nan, x), y)
    with pytest.raises(TypeError, match="numeric"):
        linear_regression.closed_form(x, y.astype(str))
    with pytest.raises(ValueError, match="mode must be one of"):
        linear_regression.gradient_descent(x, y, mode="adam")
    with pytest.raises(ValueError, match="learning_rate"):
        linear_regression.gradient_descent(x, y, learning_rate=-0.1)
    with pytest.raises(ValueError, match="epochs"):
        linear_regression.gradient_descent(x, y, epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        linear_regression.gradient_descent(x, y, mode="minibatch", batch_size=0)
    with pytest.raises(ValueError, match="lr_decay"):
        linear_regression.gradient_descent(x, y, lr_decay=-1.0)


def test_linear_regression_script_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert _script("linear_regression").main(["--epochs", "30", "--noise", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "closed form (lstsq)" in out and "stochastic GD" in out
    assert (tmp_path / "linear_regression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ MLP regression
def test_mlp_fits_sin_to_a_small_mse() -> None:
    # scripts/regression_mlp.py defaults: 1 → 32 tanh → 32 tanh → 1 linear, full-batch Adam 0.005, 2000 epochs.
    # Measured MSE against sin on [-π, π]: 2.3e-6 (seed 0), at most 9.2e-6 over seeds 0-5.
    model, res = _script("regression_mlp").train(seed=0)
    assert res["mse_truth"] < 1e-4
    assert res["train_mse"] < 1e-4
    assert model.layers[-1].activation.name == "linear"


def test_regression_mlp_script_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert _script("regression_mlp").main(["--epochs", "50", "--noise", "0.1", "--out", str(tmp_path)]) == 0
    assert "MSE against sin(x)" in capsys.readouterr().out
    assert (tmp_path / "regression_mlp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
