"""Rosenblatt's perceptron (xpnet.perceptron): convergence, XOR, the update rule by hand, multi-output TLUs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import xpnet
from xpnet.perceptron import Perceptron

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def separable(n: int = 100, margin: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Points in [-1, 1]² at least `margin` from the line x1 − 2 x2 + 0.3 = 0, labels 0/1, and Novikoff's (R/γ)²."""
    rng = np.random.default_rng(seed)
    w_true, b_true = np.array([1.0, -2.0]), 0.3
    x = rng.uniform(-1.0, 1.0, size=(4 * n, 2))
    x = x[np.abs(x @ w_true + b_true) / np.linalg.norm(w_true) >= margin][:n]
    y = (x @ w_true + b_true >= 0).astype(np.int64)
    xa, wa = np.hstack([x, np.ones((n, 1))]), np.append(w_true, b_true)
    gamma = np.min((2 * y - 1) * (xa @ wa)) / np.linalg.norm(wa)
    bound = float((np.max(np.linalg.norm(xa, axis=1)) / gamma) ** 2)
    return x.astype(np.float32), y, bound


# ------------------------------------------------------------------------------------ convergence
def test_converges_on_a_linearly_separable_set(backend: str) -> None:
    x, y, bound = separable()
    ops = xpnet.get_backend(backend)
    syncs = ops.syncs
    p = Perceptron(seed=0, backend=backend).fit(x, y)
    # measured: 15 updates in 5 epochs (mistakes per epoch 8, 3, 2, 2, 0), the same on every backend
    assert p.converged_
    assert (p.n_updates_, p.epochs_) == (15, 5)
    assert p.errors_per_epoch_ == [8, 3, 2, 2, 0]
    assert sum(p.errors_per_epoch_) == p.n_updates_
    assert p.n_updates_ <= bound  # Novikoff: at most (R/γ)² ≈ 290 updates
    assert ops.syncs - syncs == p.epochs_  # one host read (the mistake count) per epoch
    np.testing.assert_array_equal(p.predict(x), y)
    assert p.score(x, y) == 1.0
    assert p.predict(x).dtype == np.int64 and p.predict(x).shape == (100,)
    u = p.decision_function(x)
    assert u.shape == (100,) and np.all((u >= 0) == (y == 1))


def test_does_not_converge_on_xor(backend: str) -> None:
    p = Perceptron(max_epochs=50, seed=0, backend=backend).fit(XOR_X, XOR_Y)
    assert not p.converged_
    assert p.epochs_ == 50 and len(p.errors_per_epoch_) == 50
    assert min(p.errors_per_epoch_) >= 1  # no line separates XOR: every epoch makes a mistake
    assert p.n_updates_ == sum(p.errors_per_epoch_)
    assert p.score(XOR_X, XOR_Y) <= 0.75  # a line gets at most 3 of the 4 points right


def test_max_epochs_bounds_the_run() -> None:
    x, y, _ = separable()
    p = Perceptron(max_epochs=2, seed=0).fit(x, y)
    assert p.epochs_ == 2 and not p.converged_ and p.n_updates_ == 8 + 3


# ------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize(
    ("activation", "label", "w_after", "b_after"),
    [
        # u = 0.5·1 − 0.2·2 + 0.1 = 0.2 ≥ 0 → ŷ = 1; y = 0: δ = −1, η = 0.5 → w − 0.5·x, b − 0.5
        ("heaviside", 0, [0.0, -1.2], -0.4),
        # ŷ = +1, y = −1: δ = −2 → w − 1.0·x, b − 1.0
        ("sign", -1, [-0.5, -2.2], -0.9),
    ],
)
def test_one_update_of_the_rule_by_hand(
    backend: str, activation: str, label: int, w_after: list[float], b_after: float
) -> None:
    p = Perceptron(activation=activation, learning_rate=0.5, shuffle=False, backend=backend, dtype="float64")
    p.set_weights([np.array([[0.5], [-0.2]]), np.array([0.1])])
    p.partial_fit(np.array([[1.0, 2.0]]), np.array([label]))
    w, b = p.get_weights()
    np.testing.assert_allclose(w[:, 0], w_after, atol=1e-15)
    np.testing.assert_allclose(b, [b_after], atol=1e-15)
    assert (p.n_updates_, p.epochs_, p.converged_, p.errors_per_epoch_) == (1, 1, False, [1])
    # right answer now: u = −0.4 − 2.4 < 0 → ŷ = 0 (or −1): a second pass changes nothing
    p.partial_fit(np.array([[1.0, 2.0]]), np.array([label]))
    np.testing.assert_allclose(p.get_weights()[0][:, 0], w_after, atol=1e-15)
    assert (p.n_updates_, p.epochs_, p.converged_, p.errors_per_epoch_) == (1, 2, True, [1, 0])


def test_zero_start_makes_the_learning_rate_a_pure_scale() -> None:
    x, y, _ = separable()
    a = Perceptron(learning_rate=1.0, seed=3).fit(x, y)
    c = Perceptron(learning_rate=0.25, seed=3).fit(x, y)
    assert (a.n_updates_, a.epochs_) == (c.n_updates_, c.epochs_)
    wa, ba = a.get_weights()
    wc, bc = c.get_weights()
    np.testing.assert_array_equal(wc, 0.25 * wa)  # powers of two: exact
    np.testing.assert_array_equal(bc, 0.25 * ba)


def test_fit_equals_partial_fit_epoch_by_epoch() -> None:
    x, y, _ = separable()
    a = Perceptron(seed=7).fit(x, y)
    b = Perceptron(seed=7)
    while not b.converged_:
        b.partial_fit(x, y)
    assert a.errors_per_epoch_ == b.errors_per_epoch_ and a.n_updates_ == b.n_updates_
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_shuffle_seed_reproducible_and_no_shuffle_is_data_order() -> None:
    x, y, _ = separable()
    r1 = Perceptron(seed=1).fit(x, y).errors_per_epoch_
    assert Perceptron(seed=1).fit(x, y).errors_per_epoch_ == r1
    ordered = Perceptron(shuffle=False).fit(x, y)
    assert ordered.converged_ and ordered.score(x, y) == 1.0


# ------------------------------------------------------------------------------------ sign vs heaviside
def test_sign_and_heaviside_make_the_same_mistakes(backend: str) -> None:
    x, y, _ = separable()
    h = Perceptron(activation="heaviside", seed=0, backend=backend).fit(x, y)
    s = Perceptron(activation="sign", seed=0, backend=backend).fit(x, 2 * y - 1)
    # the same predictions from zero weights, and each sign update is twice the heaviside one (δ = ±2 vs ±1)
    assert s.errors_per_epoch_ == h.errors_per_epoch_ and s.converged_
    np.testing.assert_array_equal(s.get_weights()[0], 2 * h.get_weights()[0])
    np.testing.assert_array_equal(s.predict(x), 2 * h.predict(x) - 1)
    assert set(np.unique(s.predict(x))) == {-1, 1}
    # u = 0 gives +1, never sgn(0) = 0
    t = Perceptron(activation="sign")
    t.set_weights([np.zeros((2, 1)), np.zeros(1)])
    np.testing.assert_array_equal(t.predict(np.zeros((3, 2))), [1, 1, 1])


# ------------------------------------------------------------------------------------ several TLUs
def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight clusters at the corners of a triangle: each class is linearly separable from the rest."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    labels = rng.integers(0, 3, 90)
    return (centres[labels] + 0.3 * rng.standard_normal((90, 2))).astype(np.float32), labels


def test_multi_output_tlu_layer_learns_one_vs_rest(backend: str) -> None:
    x, labels = blobs()
    onehot = np.eye(3, dtype=np.int64)[labels]
    p = Perceptron(units=3, seed=0, backend=backend).fit(x, onehot)
    assert p.converged_ and p.score(x, onehot) == 1.0
    w, b = p.get_weights()
    assert w.shape == (2, 3) and b.shape == (3,)
    pred = p.predict(x)
    assert pred.shape == (90, 3) and p.decision_function(x).shape == (90, 3)
    np.testing.assert_array_equal(pred, onehot)
    # 1-D class indices are expanded to the same targets
    q = Perceptron(units=3, seed=0, backend=backend).fit(x, labels)
    assert q.errors_per_epoch_ == p.errors_per_epoch_
    # sign: one-vs-rest ±1
    s = Perceptron(units=3, activation="sign", seed=0, backend=backend).fit(x, labels)
    np.testing.assert_array_equal(s.predict(x), 2 * onehot - 1)


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("activation", "y", "match"),
    [
        ("heaviside", [-1, 1, 1, -1], "heaviside labels must be 0 or 1"),
        ("heaviside", [0, 2, 1, 0], "must be 0 or 1"),
        ("heaviside", [0.0, 0.5, 1.0, 0.0], "must be 0 or 1"),
        ("sign", [0, 1, 1, 0], r"2 \* y - 1"),
        ("sign", [-1, 0, 1, 1], "sign labels must be −1 or \\+1"),
    ],
)
def test_bad_labels_raise(activation: str, y: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Perceptron(activation=activation).fit(XOR_X, np.array(y))


def test_bad_shapes_and_arguments_raise() -> None:
    p = Perceptron()
    with pytest.raises(ValueError, match="2-D"):
        p.fit(np.zeros(4), XOR_Y)
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        p.fit(XOR_X, XOR_Y[:3])
    with pytest.raises(ValueError, match=r"shape \(4,\) or \(4, 1\)"):
        p.fit(XOR_X, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        p.fit(np.array([[0.0, np.nan]]), np.array([1]))
    with pytest.raises(TypeError, match="numeric"):
        p.fit(XOR_X, np.array(["a", "b", "a", "b"]))
    with pytest.raises(ValueError, match=r"class indices 0\.\.2"):
        Perceptron(units=3).fit(XOR_X, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="no weights yet"):
        Perceptron().predict(XOR_X)
    p.fit(XOR_X, XOR_Y)
    with pytest.raises(ValueError, match="trained on 2 features, x has 3"):
        p.predict(np.zeros((1, 3)))
    for kwargs in ({"units": 0}, {"activation": "relu"}, {"learning_rate": 0}, {"max_epochs": 0}, {"dtype": "int8"}):
        with pytest.raises(ValueError):
            Perceptron(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the script
def _script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "scripts" / "perceptron.py"
    spec = importlib.util.spec_from_file_location("xpnet_perceptron_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_converges_then_fails_on_xor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert _script().main(["--xor-epochs", "6", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "converged after 15 updates in 5 epochs" in out
    assert "XOR: NOT converged after 6 epochs" in out
    for name in ("perceptron_separable.png", "perceptron_xor.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
