"""A model whose training step was captured as a CUDA graph can be deep-copied (the copy captures its own)."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

import xpnet
from xpnet import Dense
from xpnet.backend import _cupy_problem


@pytest.mark.gpu
def test_a_model_with_a_captured_step_deep_copies_and_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"cupy backend unavailable: {problem.split(' (')[0]}")
    if "gpusim" in sys.modules:
        import gpusim.cublas as emulated

        monkeypatch.setattr(emulated, "IN_CAPTURE", True)  # as the direct libcublas binding records
    model = xpnet.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="cupy", jit_compile=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.step_program.captures
    twin = copy.deepcopy(model)
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    twin.fit(x, y, epochs=1, verbose=0, shuffle=False)
    assert twin.step_program.captures
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
