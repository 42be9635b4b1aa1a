"""Metrics made from others: a function as a metric, a dense metric on sparse targets, a weighted mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend.values import arange_like
from .base import Array, Metric
from .confusion import _ConfusionCounts


class FunctionMetric(Metric):
    """Wraps a user function fn(y_true, y_pred) -> (n,) per-sample values."""

    def __init__(self, fn: Callable[[Array, Array], Array], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "metric"))

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return self.fn(y_true, y_pred)


class SparseAsDense(Metric):
    """Lets a dense metric (mse, ...) read sparse integer targets by one-hot encoding them."""

    def __init__(self, inner: Metric) -> None:
        self.inner, self.name = inner, inner.name

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        classes = arange_like(xp, y_pred.shape[-1], y_true.dtype, y_true)
        onehot = xp.astype(xp.reshape(y_true, (-1, 1)) == classes, y_pred.dtype)
        return self.inner.call(xp, onehot, y_pred)


class WeightedMean(Metric):
    """A mean metric under sample weights, as Keras's `weighted_metrics`: Σ wᵢvᵢ / Σ wᵢ.

    The state is [Σ wᵢvᵢ, Σ wᵢ] (w = 1 when fit/evaluate get no weights); the value is 0 when the
    weights sum to 0, as Keras's divide_no_nan. Metrics whose state is not a mean (precision,
    recall, F1, AUC count confusions) are refused.
    """

    def __init__(self, inner: Metric) -> None:
        if inner.stateful:
            raise ValueError(
                f"weighted_metrics: {inner.name!r} keeps its own state (update_state); xpnet weights only its "
                "mean metrics (accuracy, mse, mae, ...): pass it in metrics=[...]"
            )
        if isinstance(inner, _ConfusionCounts):
            raise ValueError(
                f"weighted_metrics: {inner.name!r} is not a mean of per-sample values, and xpnet weights only "
                "those (accuracy, mse, mae, ...); pass it in metrics=[...] instead"
            )
        self.inner, self.name = inner, inner.name

    def update(self, xp: Any, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:  # type: ignore[override]
        v = self.inner.call(xp, y_true, y_pred)
        w = xp.ones_like(v) if sample_weight is None else xp.astype(sample_weight, v.dtype)
        return xp.stack([xp.sum(w * v), xp.sum(w)])

    def result(self, state: Any = None, count: int | None = None) -> float:
        if state is None:
            return self._standalone_result()
        return float(state[0]) / float(state[1]) if float(state[1]) != 0.0 else 0.0

    def __repr__(self) -> str:
        return f"WeightedMean({self.inner!r})"
