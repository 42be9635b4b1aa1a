"""A user's formula is the one that runs: a function activation that mixes rows, an activation subclass
with its own φ under a cross-entropy, a loss subclass with its own `call` (found by review of the
backend-variants work)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xpnet import Dense, Sequential, ops


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
