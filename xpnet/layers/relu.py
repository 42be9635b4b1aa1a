"""Keras's `ReLU` layer: a relu with an optional cap, leak below a threshold, and threshold."""

from __future__ import annotations

import math
from typing import Any

from .. import activations as acts
from .activation import Activation
from .base import Array


class _CappedReLU(acts.Activation):
    """h = max_value for u ≥ max_value, u for threshold < u < max_value, negative_slope·(u − threshold) below."""

    name = "capped_relu"

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, xp: Any, u: Array) -> Array:
        # at u == threshold Keras gives 0 (its mask is u > threshold), whatever the threshold
        h = xp.where(u > self.threshold, u, (u - self.threshold) * self.negative_slope)
        return h if self.max_value is None else xp.minimum(h, self.max_value)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        # the slope at the kinks is the one below them, as Keras's relu gradient gives
        above = xp.astype(u > self.threshold, dh.dtype)
        slope = above * (1.0 - self.negative_slope) + self.negative_slope
        if self.max_value is not None:
            slope = slope * xp.astype(u < self.max_value, dh.dtype)
        return dh * slope

    def __repr__(self) -> str:
        return f"_CappedReLU({self.max_value}, {self.negative_slope}, {self.threshold})"


class ReLU(Activation):
    """Keras's `ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`: (batch, ...) → the same shape.

    h = max_value where x ≥ max_value, x where threshold < x < max_value, and
    negative_slope·(x − threshold) where x ≤ threshold. With the defaults it is the built-in relu
    (and its fused kernels).
    """

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        name: str | None = None,
        input_shape: Any = None,
    ) -> None:
        for what, v in (("max_value", max_value), ("negative_slope", negative_slope), ("threshold", threshold)):
            if what == "max_value" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"ReLU {what} must be a finite number >= 0, received {v!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)
        plain = self.max_value is None and self.negative_slope == 0.0 and self.threshold == 0.0
        act = acts.ReLU() if plain else _CappedReLU(self.max_value, self.negative_slope, self.threshold)
        super().__init__(act, name=name, input_shape=input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }

    def __repr__(self) -> str:
        return (
            f"ReLU(max_value={self.max_value}, negative_slope={self.negative_slope}, threshold={self.threshold}, "
            f"name={self.name!r})"
        )
