"""Shared fixtures: every backend test runs on NumPy, on the strict foreign-device stand-in
(when array-api-strict is installed) and on CuPy (marked `gpu`, skipped without a device)."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.backend import _cupy_problem

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("strict", id="strict"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
]


def _skip_reason(name: str) -> str | None:
    if name == "strict":
        try:
            import array_api_strict  # noqa: F401
        except ImportError:
            return "array-api-strict not installed (pip install 'xpnet[dev]')"
    if name == "cupy":
        problem = _cupy_problem(0)
        return problem.split(" (")[0] if problem else None
    return None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    return request.param


@pytest.fixture
def ops(backend: str) -> xpnet.backend.Ops:
    return xpnet.get_backend(backend)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
