"""The same seed gives the same training trajectory on every backend (float32 matmul rounding aside)."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.parity import compare, synthetic_fashion_like, train_on

# 300 Adam steps of the course's model B; Adam's normalised step lets float32 rounding of the
# matmuls (different summation orders on each device) move a weight by at most a few 1e-4.
MAX_ABS = 2e-3
MAX_REL = 1e-3


def test_two_numpy_runs_are_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    # the thread policy reads the machine's load each fit; BLAS sums in another order with other threads
    monkeypatch.setenv("XPNET_BLAS_THREADS", "1")
    x, y = synthetic_fashion_like(1000)
    a, b = train_on("numpy", x, y, epochs=1), train_on("numpy", x, y, epochs=1)
    for u, v in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_array_equal(u, v)


def test_strict_stand_in_follows_numpy() -> None:
    pytest.importorskip("array_api_strict")
    x, y = synthetic_fashion_like(1000)
    result = compare(train_on("strict", x, y, epochs=1), train_on("numpy", x, y, epochs=1))
    assert result["masks_identical"] == 1.0
    assert result["max_abs_weight_diff"] < 1e-5


@pytest.mark.gpu
def test_model_b_on_cupy_matches_numpy() -> None:
    from xpnet.backend import _cupy_problem

    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"needs a CUDA device: {problem.split(' (')[0]}")
    x, y = synthetic_fashion_like(6000)
    result = compare(train_on("cupy", x, y), train_on("numpy", x, y))
    assert result["steps"] == 300
    assert result["masks_identical"] == 1.0
    assert result["max_abs_weight_diff"] < MAX_ABS, result
    assert result["max_rel_weight_diff"] < MAX_REL, result


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_optimised_numpy_path_matches_the_generic_array_api_path(optimizer: str) -> None:
    """NumPy's in-place hot spots (fused softmax-CE, folded SGD step, in-place relu) = the plain code."""
    pytest.importorskip("array_api_strict")
    from xpnet import Dense, Sequential

    x, y = synthetic_fashion_like(640)
    weights = {}
    for backend in ("numpy", "strict"):
        model = Sequential([Dense(30, "relu", input_shape=(784,)), Dense(20, "tanh"), Dense(10, "softmax")], seed=3)
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)  # 40 steps
        weights[backend] = model.get_weights()
    for a, b in zip(weights["numpy"], weights["strict"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
