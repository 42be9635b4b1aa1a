"""Boundary checks shared by every entry point that takes user arrays (fit, predict, perceptron, regression)."""

from __future__ import annotations

from typing import Any

import numpy as np


def numeric_array(value: Any, what: str, name: str = "x") -> np.ndarray:
    """`value` as a non-empty numeric host array, or a TypeError/ValueError naming what was received."""
    try:
        a = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{what}: {name} must be a numeric array, could not convert {type(value).__name__}: {e}") from e
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what}: {name} must be numeric, received an array of dtype {a.dtype}")
    if a.ndim == 0 or a.shape[0] == 0 or a.size == 0:
        raise ValueError(f"{what}: {name} is empty (shape {a.shape}); pass at least one sample")
    return a


def probably_finite(a: np.ndarray) -> bool:
    """True when `a` has no NaN/inf; False may also mean that a huge sum overflowed (look closer)."""
    if a.dtype.kind != "f":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        flat = a.reshape(-1) if a.flags.c_contiguous else None
        # NaN and inf propagate into a sum of squares (one BLAS pass, no mask the size of the data)
        total = np.dot(flat, flat) if flat is not None and a.dtype.itemsize >= 4 else np.add.reduce(a, axis=None)
    return bool(np.isfinite(total))


def require_finite(a: np.ndarray, what: str, name: str = "x") -> None:
    """Raise a ValueError saying how many NaN/inf values `a` holds and where the first one is."""
    if probably_finite(a):
        return
    bad = ~np.isfinite(a)  # the sum may also have overflowed: look element by element
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise ValueError(
            f"{what}: {name} contains {int(bad.sum())} NaN or inf values (first at index {tuple(map(int, first))}); "
            "remove or impute them"
        )
