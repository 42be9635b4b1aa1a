"""Metrics as device-side running states read back only when a value is shown.

The common case is a mean of per-sample values: `call(xp, y_true, y_pred) -> (n,)`, and the
state is their running sum. Metrics that are not means (precision, recall, AUC, ...) override
`update` to return any fixed-size state array that adds up over batches (e.g. confusion
counts) and `result` to turn the summed state into the value on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend.base import arange_like
from .losses import Loss

Array = Any


class Metric:
    name = "metric"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        raise NotImplementedError

    def update(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        """This batch's contribution to the running state (a 0-d or 1-d device array; states add)."""
        return xp.sum(self.call(xp, y_true, y_pred))

    def result(self, state: Any, count: int) -> float:
        """The metric from the summed host state over `count` samples."""
        return float(state) / count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.astype(xp.argmax(y_pred, axis=-1) == y_true, y_pred.dtype)


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.astype(xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1), y_pred.dtype)


class BinaryAccuracy(Metric):
    name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        hit = (y_pred > self.threshold) == (y_true > 0.5)
        return xp.mean(xp.astype(hit, y_pred.dtype), axis=-1)


class MeanSquaredError(Metric):
    name = "mean_squared_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        d = y_pred - y_true
        return xp.mean(d * d, axis=-1)


class MeanAbsoluteError(Metric):
    name = "mean_absolute_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.mean(xp.abs(y_pred - y_true), axis=-1)


class MeanAbsolutePercentageError(Metric):
    """100 · mean(|y − ŷ| / max(|y|, ε)), as Keras computes it."""

    name = "mean_absolute_percentage_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return 100.0 * xp.mean(xp.abs(y_true - y_pred) / xp.maximum(xp.abs(y_true), 1e-7), axis=-1)


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


_REGISTRY: dict[str, type[Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
}


def get(identifier: str | Metric | Callable[..., Array], loss: Loss, n_outputs: int) -> Metric:
    """Resolve a metric; 'accuracy' picks the variant matching the loss, as Keras does."""
    if isinstance(identifier, Metric):
        metric = identifier
    elif isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            if loss.sparse:
                metric = SparseCategoricalAccuracy()
            elif n_outputs == 1 or isinstance(loss, _binary_losses()):
                metric = BinaryAccuracy(0.0 if loss.from_logits else 0.5)
            else:
                metric = CategoricalAccuracy()
        elif key in _REGISTRY:
            metric = _REGISTRY[key]()
        else:
            raise ValueError(f"Unknown metric {identifier!r}; known: ['accuracy', {', '.join(map(repr, _REGISTRY))}]")
        metric.name = identifier
    elif callable(identifier):
        metric = FunctionMetric(identifier)
    else:
        raise TypeError(f"metrics must be names, Metric instances or functions; received {identifier!r}")
    if loss.sparse and not isinstance(metric, (SparseCategoricalAccuracy, FunctionMetric)):
        metric = SparseAsDense(metric)
    return metric


def _binary_losses() -> tuple[type[Loss], ...]:
    from .losses import BinaryCrossentropy, Hinge

    return (BinaryCrossentropy, Hinge)
